//! The run's progress on the status line: a wait for the request budget shows while it lasts
//! ([`BudgetProgress`]), and while the member requests go out during the group read, the push
//! owns the line and the read comes back after it ([`SharedProgress`]).

use crate::bitwarden::{BitwardenClient, Retrying};
use crate::sources::Progress;

/// The run's progress, which also shows a wait for the request budget ("waiting 12 s for the
/// request budget") while it lasts, and then the stage again.
pub(crate) struct BudgetProgress<'a> {
    inner: &'a dyn Progress,
    /// The last stage, and the wait shown instead of it, if one is.
    state: std::sync::Mutex<(String, Option<String>)>,
}

impl<'a> BudgetProgress<'a> {
    pub(crate) fn new(inner: &'a dyn Progress) -> BudgetProgress<'a> {
        BudgetProgress {
            inner,
            state: Default::default(),
        }
    }

    /// Runs `work`, showing the waits of `client`'s request budget and its retries meanwhile.
    pub(crate) async fn while_waiting<T>(
        &self,
        client: Option<&BitwardenClient>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(client) = client else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    self.show_client(client);
                }
            }
        }
    }

    /// Shows what `client`'s requests wait for: the request budget, or a retry.
    pub(crate) fn show_client(&self, client: &BitwardenClient) {
        self.show_wait(client.budget().waiting(), client.retrying());
    }

    /// Shows a wait of `left` for the request budget (from a second on), else a request being
    /// retried ("Signing in to Bitwarden: attempt 2 of 5, next in 40 s"), or the stage again
    /// once it is over.
    pub(crate) fn show_wait(&self, left: Option<std::time::Duration>, retry: Option<Retrying>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let shown = match left.filter(|d| d.as_secs_f64() >= 1.0) {
            Some(d) => Some(format!(
                "Waiting {} s for the request budget",
                d.as_secs_f64().ceil() as u64
            )),
            None => retry.map(|r| format!("{}: {r}", st.0)),
        };
        if shown == st.1 {
            return;
        }
        match &shown {
            Some(text) => self.inner.stage(text),
            None => self.inner.stage(&st.0),
        }
        st.1 = shown;
    }
}

impl Progress for BudgetProgress<'_> {
    fn stage(&self, message: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = message.to_string();
        st.1 = None;
        self.inner.stage(message);
    }
    fn count(&self, n: u64) {
        self.inner.count(n);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
    fn set_fraction(&self, fraction: f32) {
        self.inner.set_fraction(fraction);
    }
}

/// Progress while the member requests go out during the group read: the push owns the status
/// line; the read's stage and count are kept (and logged) and shown again once the push is done,
/// if the read is still going.
pub(crate) struct SharedProgress<'a> {
    inner: &'a dyn Progress,
    state: std::sync::Mutex<SharedState>,
}

#[derive(Default)]
struct SharedState {
    pushing: bool,
    /// The read's last stage and count; `None` once the read is over.
    read: Option<(String, Option<u64>)>,
}

/// The read's side of a [`SharedProgress`].
pub(crate) struct ReadSide<'s, 'a>(&'s SharedProgress<'a>);
/// The push's side of a [`SharedProgress`].
pub(crate) struct PushSide<'s, 'a>(&'s SharedProgress<'a>);

impl<'a> SharedProgress<'a> {
    pub(crate) fn new(inner: &'a dyn Progress) -> SharedProgress<'a> {
        SharedProgress {
            inner,
            state: std::sync::Mutex::new(SharedState::default()),
        }
    }
    pub(crate) fn read(&self) -> ReadSide<'_, 'a> {
        ReadSide(self)
    }
    pub(crate) fn push(&self) -> PushSide<'_, 'a> {
        PushSide(self)
    }
    fn with<T>(&self, f: impl FnOnce(&mut SharedState) -> T) -> T {
        // a poisoned lock only means a panicking thread held it: the state is still usable
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }
    pub(crate) fn read_done(&self) {
        self.with(|s| s.read = None);
    }
    pub(crate) fn push_done(&self) {
        let read = self.with(|s| {
            s.pushing = false;
            s.read.clone()
        });
        if let Some((stage, count)) = read {
            self.inner.stage(&stage);
            if let Some(n) = count {
                self.inner.count(n);
            }
        }
    }
}

impl Progress for ReadSide<'_, '_> {
    fn stage(&self, message: &str) {
        let pushing = self.0.with(|s| {
            s.read = Some((message.to_string(), None));
            s.pushing
        });
        if pushing {
            tracing::info!("{message}");
        } else {
            self.0.inner.stage(message);
        }
    }
    fn count(&self, n: u64) {
        let pushing = self.0.with(|s| {
            if let Some((_, count)) = &mut s.read {
                *count = Some(n);
            }
            s.pushing
        });
        if !pushing {
            self.0.inner.count(n);
        }
    }
    fn cancelled(&self) -> bool {
        self.0.inner.cancelled()
    }
}

impl Progress for PushSide<'_, '_> {
    fn stage(&self, message: &str) {
        self.0.with(|s| s.pushing = true);
        self.0.inner.stage(message);
    }
    fn count(&self, n: u64) {
        self.0.inner.count(n);
    }
    fn cancelled(&self) -> bool {
        self.0.inner.cancelled()
    }
    fn set_fraction(&self, fraction: f32) {
        self.0.inner.set_fraction(fraction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what reaches the status line.
    #[derive(Default)]
    struct Shown(Mutex<Vec<String>>);
    impl Progress for Shown {
        fn stage(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
        fn count(&self, n: u64) {
            self.0.lock().unwrap().push(format!("#{n}"));
        }
    }

    #[test]
    fn the_push_owns_the_status_line_and_the_read_comes_back_after_it() {
        let shown = Shown::default();
        let shared = SharedProgress::new(&shown);
        let (read, push) = (shared.read(), shared.push());
        read.stage("Reading users");
        read.count(1000);
        push.stage("Pushing member batch 1/2");
        read.stage("Reading groups");
        read.count(500);
        push.stage("Pushing member batch 2/2");
        shared.push_done();
        read.count(900);
        assert_eq!(
            *shown.0.lock().unwrap(),
            [
                "Reading users",
                "#1000",
                "Pushing member batch 1/2",
                "Pushing member batch 2/2",
                "Reading groups",
                "#500",
                "#900"
            ]
        );
    }

    #[test]
    fn a_finished_read_is_not_shown_again() {
        let shown = Shown::default();
        let shared = SharedProgress::new(&shown);
        let (read, push) = (shared.read(), shared.push());
        read.stage("Reading groups");
        push.stage("Pushing member batch 1/1");
        shared.read_done();
        shared.push_done();
        assert_eq!(
            *shown.0.lock().unwrap(),
            ["Reading groups", "Pushing member batch 1/1"]
        );
    }

    #[test]
    fn a_retry_is_shown_after_the_stage_and_a_budget_wait_before_it() {
        let shown = Shown::default();
        let p = BudgetProgress::new(&shown);
        p.stage("Signing in to Bitwarden");
        let retry = Retrying {
            attempt: 2,
            of: 5,
            next_in: Some(std::time::Duration::from_millis(39_200)),
        };
        p.show_wait(None, Some(retry));
        p.show_wait(None, Some(retry));
        p.show_wait(Some(std::time::Duration::from_secs(12)), Some(retry));
        p.show_wait(None, None);
        assert_eq!(
            *shown.0.lock().unwrap(),
            [
                "Signing in to Bitwarden",
                "Signing in to Bitwarden: attempt 2 of 5, next in 40 s",
                "Waiting 12 s for the request budget",
                "Signing in to Bitwarden",
            ]
        );
    }
}
