//! State the directory sources keep between runs (Entra's delta link), in the `meta` table under
//! a `source:` prefix. Values a source stages during a run are written only when the connector
//! commits them after a successful sync.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Store;
use crate::engine::run::SourceState;

const PREFIX: &str = "source:";

/// The sources' state as loaded at the start of a run, plus what the run staged.
#[derive(Default)]
pub struct StagedState {
    known: HashMap<String, String>,
    staged: Mutex<Vec<(String, String)>>,
}

impl StagedState {
    /// Loads every stored value.
    pub fn load(store: &Store) -> anyhow::Result<StagedState> {
        let mut st = store
            .conn
            .prepare("SELECT key, value FROM meta WHERE key LIKE 'source:%'")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut known = HashMap::new();
        for row in rows {
            let (k, v) = row?;
            if let Some(k) = k.strip_prefix(PREFIX) {
                known.insert(k.to_string(), v);
            }
        }
        Ok(StagedState {
            known,
            staged: Mutex::default(),
        })
    }

    /// Writes what the run staged (after a successful sync).
    pub fn commit(&self, store: &Store) -> anyhow::Result<()> {
        let staged = std::mem::take(
            &mut *self
                .staged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (k, v) in staged {
            store.meta_set(&format!("{PREFIX}{k}"), Some(&v))?;
        }
        Ok(())
    }
}

impl SourceState for StagedState {
    fn get(&self, key: &str) -> Option<String> {
        self.known.get(key).cloned()
    }
    fn stage(&self, key: &str, value: &str) {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key.to_string(), value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_values_are_kept_only_when_committed() {
        let s = Store::open_in_memory().unwrap();
        let a = StagedState::load(&s).unwrap();
        assert_eq!(a.get("entra.delta"), None);
        a.stage("entra.delta", "link-1");
        // not committed: a new run does not see it
        assert_eq!(StagedState::load(&s).unwrap().get("entra.delta"), None);
        a.commit(&s).unwrap();
        let b = StagedState::load(&s).unwrap();
        assert_eq!(b.get("entra.delta").as_deref(), Some("link-1"));
    }
}
