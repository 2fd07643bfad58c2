//! What a run keeps and reports besides the plan, as plain values shared by the parts that do
//! the I/O: the state a directory source keeps between runs ([`SourceState`], stored by
//! the `store`) and the requests a run sent to Bitwarden ([`RequestStats`], counted by
//! the `bitwarden` client, recorded by the store).

/// State a source keeps between runs (e.g. Entra's delta link). Keys are the source's own; a
/// source puts whatever identifies its scope (tenant, filter) into the key. `get` returns what
/// the last successful sync staged; values given to `stage` are kept only when the sync they
/// belong to succeeds (the connector commits them after the push), so a failed sync or a `test`
/// never moves the state forward.
pub trait SourceState: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
    fn stage(&self, key: &str, value: &str);
}

/// No state: every run starts afresh (tests, and `test` when the store cannot be read).
pub struct NoState;

impl SourceState for NoState {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
    fn stage(&self, _: &str, _: &str) {}
}

/// Requests a run sent, by kind, with the refusals it met and the time it waited for the
/// budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStats {
    pub token: u64,
    pub members: u64,
    pub groups: u64,
    pub member_ids: u64,
    pub import: u64,
    /// The member API: revoke, restore, a member read and updated for a rename.
    pub member_api: u64,
    /// 429 answers.
    pub refusals: u64,
    /// Time during which at least one request waited for the budget (milliseconds; concurrent
    /// waits are counted once).
    pub waited_ms: u64,
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.token + self.members + self.groups + self.member_ids + self.import + self.member_api
    }

    /// One line for logs and the summary.
    pub fn describe(&self) -> String {
        format!(
            "{} request(s) to Bitwarden: {} token, {} member list, {} group list, {} group \
             member list, {} import{}; {} refused (429); {:.1}s waited for the request budget",
            self.total(),
            self.token,
            self.members,
            self.groups,
            self.member_ids,
            self.import,
            match self.member_api {
                0 => String::new(),
                n => format!(", {n} member API (revoke, restore, rename)"),
            },
            self.refusals,
            self.waited_ms as f64 / 1000.0
        )
    }
}
