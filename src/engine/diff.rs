//! Diff of the normalized directory against the cache of what the server last confirmed,
//! giving the [`Plan`]: who to invite, update or remove, which groups to create or update.

use foldhash::{HashMap, HashSet, HashSetExt};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::Id;
use super::normalize::{NormGroup, NormUser, Normalized};

/// A member the server confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedMember {
    pub email: String,
}

/// A group the server confirmed, with a fingerprint of its name and member list, and the
/// member list itself (sorted externalIds; absent in caches written before it was kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedGroup {
    pub name: String,
    pub fingerprint: String,
    pub member_count: usize,
    pub members: Option<Vec<Id>>,
    /// When the server last confirmed it (`None` in a baseline read from the organization,
    /// which needs no re-send).
    pub synced_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The group has left the directory since it was last sent. The import cannot delete it, so
    /// the organization keeps it with these members: if the directory returns it, it is sent
    /// again in full and what it loses counts for the group guard.
    pub left_directory: bool,
}

/// The cache as the diff sees it, keyed by externalId.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub members: HashMap<String, CachedMember>,
    pub groups: HashMap<String, CachedGroup>,
    /// externalIds of the members that are owners (only the organization's read API shows a
    /// member's type). A sync never removes an owner: the server would refuse it.
    pub owners: HashSet<String>,
    /// The baseline holds every member with an externalId the server has: the organization as
    /// read, or a cache started by a confirmed `overwriteExisting` push (the server removed
    /// every member not listed) and kept since. A cache started any other way (the first sync,
    /// `clear-cache`, another `server.url`) may miss members the server has: removals that the
    /// server makes on its own (`overwriteExisting`) cannot be counted against it, and members
    /// that left the directory may be unknown to it.
    pub complete: bool,
    /// Emails the server last confirmed for members whose directory email differs (a pending
    /// email change), by externalId, kept by `clear-cache`. A server that matches members by
    /// email (Vaultwarden) would make the new address a second membership: a member with a
    /// pending change is never sent, even when the cache no longer holds it.
    pub email_pins: HashMap<String, String>,
}

/// Why a member is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalReason {
    /// Deleted in the directory.
    Deleted,
    /// Disabled in the directory, with `remove_disabled` on.
    Disabled,
    /// No longer returned by the directory (`remove_missing_users` or `overwrite_existing`).
    Missing,
}

/// What happens to one member. (An email change is not an action: the import API cannot
/// change a member's email; see [`EmailChange`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberAction {
    Invite,
    /// Sent again unchanged (full push, or kept by `overwrite_existing` as protected).
    Resend,
    Remove(RemovalReason),
    /// Revoked through the member API: the member keeps its membership, groups and collections
    /// and can do nothing until restored (see [`super::lifecycle`]).
    Revoke(RemovalReason),
    /// A member the connector revoked, back in the directory: restored through the member API,
    /// with its member id (no new invitation).
    Restore,
    /// A member whose directory entry moved or was renamed (the same immutable id under a new
    /// DN): its externalId is updated, nothing else changes.
    Rename,
}

/// One member in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberChange {
    pub external_id: String,
    pub email: String,
    pub action: MemberAction,
    /// The organization's id of the member (the member API's actions: revoke, restore, rename).
    #[serde(skip)]
    pub member_id: Option<String>,
    /// The externalId the organization has, for a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_external_id: Option<String>,
}

impl MemberChange {
    /// A change of a member with no member id (an import's member).
    pub fn new(
        external_id: impl Into<String>,
        email: impl Into<String>,
        action: MemberAction,
    ) -> Self {
        MemberChange {
            external_id: external_id.into(),
            email: email.into(),
            action,
            member_id: None,
            previous_external_id: None,
        }
    }
}

/// A member whose email in the directory differs from the one the baseline has. Not sent: the
/// import matches existing members by externalId and keeps their email (Bitwarden), or matches
/// by email and would create a second membership (Vaultwarden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailChange {
    pub external_id: String,
    pub baseline_email: String,
    pub directory_email: String,
}

/// What the admin should do about an email change (shown with the plan).
pub const EMAIL_CHANGE_ADVICE: &str = "the import cannot change a member's email, so the \
     connector does not send it. Bitwarden keeps the account's email: the user changes it in \
     their account settings (or remove the member and let the next sync invite the new address). \
     Vaultwarden matches members by email and would create a second membership: change the \
     email in the user's account, then run `clear-cache --forget-email-changes` so the next sync \
     takes the new one (a plain `clear-cache` keeps the pending change, so that the new address \
     is never sent beside the old one).";

/// Why an owner the directory would remove stays.
pub const OWNER_ADVICE: &str = "a sync never removes an owner (the server refuses to, so the \
     removal would fail every sync): remove the owner or change its role in the Admin Console";

/// The warning of a plan made with no baseline.
pub const NO_BASELINE_DEPARTURES: &str = "departures cannot be detected: there is no baseline \
     (the local sync cache is empty and the server cannot be read back), so members that left \
     the directory stay in the organization and are not listed here. Remove them in the Admin \
     Console, or run one sync with sync.overwrite_existing and --allow-mass-removal (the server \
     then removes every member with an externalId that the directory does not list; the cache \
     is complete after it, and this warning ends)";

/// The warning of a plan made against a cache that may miss members, with
/// `sync.remove_missing_users` on.
pub const PARTIAL_CACHE_DEPARTURES: &str = "departures may go undetected: the local sync cache \
     was started without a baseline (first sync, clear-cache or another server.url), so members \
     that left the directory before then are unknown to it and are neither removed nor listed. \
     One sync with sync.overwrite_existing and --allow-mass-removal makes the server remove \
     them and the cache complete, which ends this warning";

/// What the plan was made against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// The organization as the server's read API shows it.
    Organization,
    /// The local cache of what the server confirmed (the server has no read API, or it could
    /// not be reached for a preview).
    Cache,
    /// Neither: the cache is empty and the organization cannot be read.
    #[default]
    None,
}

impl Baseline {
    pub fn describe(self) -> &'static str {
        match self {
            Baseline::Organization => "the organization (read from the server)",
            Baseline::Cache => "the local sync cache (the server cannot be read back)",
            Baseline::None => {
                "nothing: the local sync cache is empty and the server cannot be read back"
            }
        }
    }
}

impl MemberAction {
    /// How the front ends name the action.
    pub fn label(self) -> &'static str {
        match self {
            MemberAction::Invite => "invite",
            MemberAction::Resend => "resend",
            MemberAction::Remove(RemovalReason::Deleted) => "remove (deleted)",
            MemberAction::Remove(RemovalReason::Disabled) => "remove (disabled)",
            MemberAction::Remove(RemovalReason::Missing) => "remove (no longer in directory)",
            MemberAction::Revoke(RemovalReason::Deleted) => "revoke (deleted)",
            MemberAction::Revoke(RemovalReason::Disabled) => "revoke (disabled)",
            MemberAction::Revoke(RemovalReason::Missing) => "revoke (no longer in directory)",
            MemberAction::Restore => "restore (back in the directory)",
            MemberAction::Rename => "rename externalId (the entry moved)",
        }
    }
}

impl MemberChange {
    /// Sent to the import as `deleted` (removed by Bitwarden, revoked by Vaultwarden).
    pub fn is_removal(&self) -> bool {
        matches!(self.action, MemberAction::Remove(_))
    }
    /// Ends the member's access: a removal or a revoke (what the guards count).
    pub fn is_departure(&self) -> bool {
        matches!(
            self.action,
            MemberAction::Remove(_) | MemberAction::Revoke(_)
        )
    }
    /// Done through the member API, not the import (revoke, restore, rename).
    pub fn uses_member_api(&self) -> bool {
        matches!(
            self.action,
            MemberAction::Revoke(_) | MemberAction::Restore | MemberAction::Rename
        ) && self.member_id.is_some()
    }
}

/// What happens to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupAction {
    Create,
    Update,
    Resend,
    /// With no baseline: the group may exist on the server with members nobody here knows,
    /// and the import replaces them (see [`mark_unknown_replacements`]).
    Replace,
}

/// One group in the plan, with the full member list it will have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    pub external_id: String,
    pub name: String,
    pub members: Vec<Id>,
    #[serde(skip)]
    pub fingerprint: String,
    pub action: GroupAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_member_count: Option<usize>,
    /// The name the baseline has, when this change renames the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_name: Option<String>,
    /// Member references the baseline has and this change takes out.
    pub removed_members: usize,
    /// The directory did not change this group: someone changed it in the organization, and
    /// this change puts it back.
    pub repairs_drift: bool,
}

impl GroupChange {
    /// How the front ends name the action.
    pub fn label(&self) -> String {
        let base = match self.action {
            GroupAction::Create => "create",
            GroupAction::Update => "update",
            GroupAction::Resend => "resend",
            GroupAction::Replace => "create or replace (the server's members are unknown)",
        };
        let mut s = base.to_string();
        if let Some(old) = &self.previous_name {
            s = format!("rename from `{old}`");
            if self.previous_member_count != Some(self.members.len()) || self.removed_members > 0 {
                s.push_str(", members");
            }
        }
        if self.repairs_drift {
            s.push_str(" (repairs a change made outside the connector)");
        }
        s
    }
}

/// Options that shape the diff.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub remove_disabled: bool,
    pub remove_missing_users: bool,
    pub overwrite_existing: bool,
    /// The baseline is the organization as read from a server that drops a removed member from
    /// its groups itself (Bitwarden). Without it (the cache), every group that loses a member is
    /// sent again, removals included, so that a server keeping a revoked member's group rows
    /// (Vaultwarden) ends up right.
    pub cascade_removals: bool,
    /// Lower-cased emails a sync never removes, revokes or takes out of a group.
    pub protected: std::sync::Arc<HashSet<String>>,
    /// externalIds of members revoked (or waiting for the grace period): they stay in the
    /// groups the baseline has them in until they are removed.
    pub revoked_stay: std::sync::Arc<HashSet<String>>,
    /// Groups the cache confirmed before this time are sent again (a server that cannot be
    /// read back may have dropped them, or they were changed by hand).
    pub resend_groups_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a sync would change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// What the plan was made against.
    pub baseline: Baseline,
    /// Members whose email differs from the baseline's: not sent (see [`EmailChange`]).
    pub email_changes: Vec<EmailChange>,
    /// Emails in `sync.protected_emails` the directory would have removed or taken out of a
    /// group, and what was kept.
    pub protected: Vec<String>,
    /// Members the directory would have removed that a sync never removes (owners), each with
    /// the reason.
    pub kept: Vec<String>,
    /// What the plan cannot see, shown with it (e.g. departures that cannot be detected
    /// without a baseline).
    pub warnings: Vec<String>,
    /// The baseline holds every member the server has (see [`Cache::complete`]).
    pub baseline_complete: bool,
    /// Everything is sent, not only the differences (empty cache or `overwrite_existing`).
    pub full_push: bool,
    pub overwrite_existing: bool,
    pub members: Vec<MemberChange>,
    pub groups: Vec<GroupChange>,
    pub unchanged_members: usize,
    pub unchanged_groups: usize,
    /// Groups the baseline knows that the directory no longer returns. The import API cannot
    /// delete groups: they stay in the organization, and the cache keeps them marked as having
    /// left the directory.
    pub stale_groups: Vec<String>,
    /// Members in the cache before this run.
    pub cached_members: usize,
    /// Whether users / groups were part of this run.
    pub users_synced: bool,
    pub groups_synced: bool,
    /// Users the directory returned (after normalization), all states.
    pub directory_users: usize,
    /// Members the connector revoked that have left the directory and wait for the grace
    /// period (`sync.remove_revoked_after_days`) before they are removed, each with when.
    pub pending_removals: Vec<String>,
    /// The server has no read API (Vaultwarden): its import revokes a member sent as `deleted`
    /// (kept with its membership) and restores a revoked member listed again, so the plan's
    /// removals are revokes there (see [`Plan::member_label`]).
    pub import_revokes: bool,
}

impl Plan {
    /// One line: what the plan does and leaves unchanged.
    pub fn summary(&self) -> String {
        let resends = |n: usize| {
            if n > 0 {
                format!(", resend {n}")
            } else {
                String::new()
            }
        };
        format!(
            "Plan{}: invite {}{}, {} {}{}; groups: create {}{}, update {}{}; unchanged: {} members, {} groups{}{}",
            if self.full_push { " (full push)" } else { "" },
            self.invites(),
            self.lifecycle_summary(),
            if self.import_revokes {
                "revoke (by the import)"
            } else {
                "remove"
            },
            if self.overwrite_existing && !self.baseline_complete {
                // the server removes every member with an externalId the push does not list,
                // and with no complete baseline nobody here knows how many
                format!(
                    "{} (and the members with an externalId this push does not list: the \
                     server removes them, uncounted)",
                    self.removals()
                )
            } else {
                self.removals().to_string()
            },
            resends(self.resends()),
            self.count_groups(GroupAction::Create),
            match self.count_groups(GroupAction::Replace) {
                0 => String::new(),
                n => format!(", create or replace {n} (the server's members are unknown)"),
            },
            self.count_groups(GroupAction::Update),
            resends(self.count_groups(GroupAction::Resend)),
            self.unchanged_members,
            self.unchanged_groups,
            match self.email_changes.len() {
                0 => String::new(),
                n => format!("; {n} email change(s) not sent"),
            },
            match self.pending_removals.len() {
                0 => String::new(),
                n => format!("; {n} revoked member(s) wait for the grace period"),
            }
        )
    }

    /// ", revoke 2, restore 1, rename 1": the member API's actions, where there are any.
    fn lifecycle_summary(&self) -> String {
        [
            ("revoke", self.revokes()),
            ("restore", self.restores()),
            ("rename", self.renames()),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!(", {w} {n}"))
        .collect()
    }

    /// How the front ends name a member's change in this plan: on a server whose import
    /// revokes ([`Plan::import_revokes`]) a removal is a revoke.
    pub fn member_label(&self, m: &MemberChange) -> &'static str {
        if !self.import_revokes {
            return m.action.label();
        }
        match m.action {
            MemberAction::Remove(RemovalReason::Deleted) => "revoke (deleted; by the import)",
            MemberAction::Remove(RemovalReason::Disabled) => "revoke (disabled; by the import)",
            MemberAction::Remove(RemovalReason::Missing) => {
                "revoke (no longer in directory; by the import)"
            }
            MemberAction::Restore => "restore (back in the directory; by the import)",
            MemberAction::Rename => "rename externalId (matched by email)",
            a => a.label(),
        }
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.groups.is_empty() && !self.overwrite_existing
    }
    pub fn count_members(&self, f: impl Fn(&MemberAction) -> bool) -> usize {
        self.members.iter().filter(|m| f(&m.action)).count()
    }
    pub fn invites(&self) -> usize {
        self.count_members(|a| *a == MemberAction::Invite)
    }
    pub fn resends(&self) -> usize {
        self.count_members(|a| *a == MemberAction::Resend)
    }
    pub fn removals(&self) -> usize {
        self.count_members(|a| matches!(a, MemberAction::Remove(_)))
    }
    pub fn revokes(&self) -> usize {
        self.count_members(|a| matches!(a, MemberAction::Revoke(_)))
    }
    pub fn restores(&self) -> usize {
        self.count_members(|a| *a == MemberAction::Restore)
    }
    pub fn renames(&self) -> usize {
        self.count_members(|a| *a == MemberAction::Rename)
    }
    /// Removals and revokes: what ends someone's access (the guards count these).
    pub fn departures(&self) -> usize {
        self.count_members(|a| matches!(a, MemberAction::Remove(_) | MemberAction::Revoke(_)))
    }
    pub fn count_groups(&self, action: GroupAction) -> usize {
        self.groups.iter().filter(|g| g.action == action).count()
    }
}

/// Fingerprint of a group's name and (sorted) member list.
pub fn group_fingerprint<S: AsRef<str>>(name: &str, sorted_members: &[S]) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    for m in sorted_members {
        h.update([0u8]);
        h.update(m.as_ref().as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Computes the plan.
pub fn diff(n: &Normalized, cache: &Cache, opts: &DiffOptions) -> Plan {
    let (mut plan, desired) = diff_members(n.users.as_deref(), cache, opts);
    diff_groups(
        &mut plan,
        n.groups.as_deref(),
        desired.as_ref(),
        cache,
        opts,
    );
    plan
}

/// Marks the group changes that put back what someone changed in the organization: the local
/// cache's fingerprints (by externalId) say the connector last sent exactly this group, so the
/// directory did not change it.
pub fn mark_drift_repairs(plan: &mut Plan, sent: &std::collections::HashMap<String, String>) {
    for g in &mut plan.groups {
        if g.action == GroupAction::Update
            && sent
                .get(&g.external_id)
                .is_some_and(|f| *f == g.fingerprint)
        {
            g.repairs_drift = true;
        }
    }
}

/// Counts each group the plan creates against the sync cache's last confirmed row of it, where
/// there is one (`rows`: member references by the group's externalId). The organization did not
/// list the group (deleted by hand, or a short answer from the server), but what the connector
/// last confirmed it had is what sending it again may take out: the group guard counts that
/// instead of nothing.
pub fn count_creates_against_rows(
    plan: &mut Plan,
    rows: &std::collections::HashMap<String, Vec<Id>>,
) {
    for g in &mut plan.groups {
        if g.action != GroupAction::Create || g.previous_member_count.is_some() {
            continue;
        }
        let Some(row) = rows.get(&g.external_id) else {
            continue;
        };
        let kept: HashSet<&str> = g.members.iter().map(|m| &**m).collect();
        g.previous_member_count = Some(row.len());
        g.removed_members = row.iter().filter(|r| !kept.contains(&***r)).count();
    }
}

/// With no baseline (an empty sync cache, and a server that cannot be read back), a group the
/// plan creates may exist on the server with members nobody here knows, and the import would
/// replace them: each is marked [`GroupAction::Replace`] and counted against its member count
/// as the server last confirmed it (`sizes`, by externalId: kept by `clear-cache`), where known.
pub fn mark_unknown_replacements(
    plan: &mut Plan,
    sizes: &std::collections::BTreeMap<String, usize>,
) {
    if plan.baseline != Baseline::None {
        return;
    }
    for g in &mut plan.groups {
        if g.action != GroupAction::Create {
            continue;
        }
        g.action = GroupAction::Replace;
        if let Some(&n) = sizes.get(&g.external_id) {
            g.previous_member_count = Some(n);
            g.removed_members = n.saturating_sub(g.members.len());
        }
    }
}

/// externalIds that will be members after a sync (from [`diff_members`]; `None` when users are
/// not synced).
pub type Desired = Option<HashSet<Id>>;

/// The member half of the plan (users only: a sync can push it while groups are still being
/// read), and the members the sync keeps, for [`diff_groups`].
pub fn diff_members(
    users: Option<&[NormUser]>,
    cache: &Cache,
    opts: &DiffOptions,
) -> (Plan, Desired) {
    let full_push =
        opts.overwrite_existing || (cache.members.is_empty() && cache.groups.is_empty());
    let mut plan = Plan {
        full_push,
        overwrite_existing: opts.overwrite_existing,
        cached_members: cache.members.len(),
        users_synced: users.is_some(),
        baseline_complete: cache.complete,
        ..Plan::default()
    };
    if users.is_some() && !cache.complete {
        let no_baseline = cache.members.is_empty() && cache.groups.is_empty();
        if no_baseline {
            plan.warnings.push(NO_BASELINE_DEPARTURES.to_string());
        } else if opts.remove_missing_users {
            plan.warnings.push(PARTIAL_CACHE_DEPARTURES.to_string());
        }
    }
    let Some(users) = users else {
        return (plan, None);
    };
    plan.directory_users = users.len();
    let mut diff = MemberDiff {
        cache,
        opts,
        plan,
        keep: HashSet::with_capacity(users.len()),
    };
    let mut seen: HashSet<&str> = HashSet::with_capacity(users.len());
    for u in users {
        seen.insert(&*u.external_id);
        let removal = if u.deleted {
            Some(RemovalReason::Deleted)
        } else if u.disabled && opts.remove_disabled {
            Some(RemovalReason::Disabled)
        } else {
            None
        };
        match removal {
            Some(reason) => diff.leaving(u, reason),
            None => diff.staying(u),
        }
    }
    // members the directory no longer returns: removed only when asked (protected ones are
    // listed instead, so that overwriteExisting keeps them)
    if opts.remove_missing_users || opts.overwrite_existing {
        diff.missing(&seen);
    }
    (diff.plan, Some(diff.keep))
}

/// [`diff_members`] under way: what it compares against, the plan so far and the members that
/// stay.
struct MemberDiff<'a> {
    cache: &'a Cache,
    opts: &'a DiffOptions,
    plan: Plan,
    keep: HashSet<Id>,
}

impl MemberDiff<'_> {
    fn is_protected(&self, email: &str) -> bool {
        self.opts.protected.contains(email)
    }

    fn is_owner(&self, id: &str) -> bool {
        self.cache.owners.contains(id)
    }

    /// A user the directory deletes or disables (`reason`): removed, unless an owner or
    /// protected (then kept, and listed).
    fn leaving(&mut self, u: &NormUser, reason: RemovalReason) {
        let cached = self.cache.members.get(&*u.external_id);
        let full_push = self.plan.full_push;
        // Removal needs an email on the wire; the cache knows the confirmed one.
        let email = cached
            .map(|c| c.email.clone())
            .or_else(|| if full_push { u.email.clone() } else { None });
        let Some(email) = email else {
            return;
        };
        if self.is_owner(&u.external_id) {
            self.plan.kept.push(format!(
                "{email}: owner, not removed ({} in the directory); {OWNER_ADVICE}",
                u.status()
            ));
            self.keep.insert(u.external_id.clone());
            if self.opts.overwrite_existing {
                self.plan.members.push(MemberChange {
                    external_id: u.external_id.to_string(),
                    email,
                    action: MemberAction::Resend,
                    member_id: None,
                    previous_external_id: None,
                });
            }
            return;
        }
        if self.is_protected(&email) {
            self.plan.protected.push(format!(
                "{email}: not removed ({} in the directory)",
                u.status()
            ));
            if let Some(c) = cached {
                self.keep.insert(u.external_id.clone());
                if self.opts.overwrite_existing {
                    self.plan.members.push(MemberChange {
                        external_id: u.external_id.to_string(),
                        email: c.email.clone(),
                        action: MemberAction::Resend,
                        member_id: None,
                        previous_external_id: None,
                    });
                }
            }
            return;
        }
        self.plan.members.push(MemberChange {
            external_id: u.external_id.to_string(),
            email,
            action: MemberAction::Remove(reason),
            member_id: None,
            previous_external_id: None,
        });
    }

    /// A user the directory keeps: invited when new, sent again on a full push, unchanged
    /// otherwise; an email that differs from the baseline's is listed, not sent.
    fn staying(&mut self, u: &NormUser) {
        let Some(email) = u.email.clone() else {
            return;
        };
        let cache = self.cache;
        let full_push = self.plan.full_push;
        let cached = cache.members.get(&*u.external_id);
        self.keep.insert(u.external_id.clone());
        // a pending email change the cache no longer holds (`clear-cache`): the server
        // still has the old address, and the new one would be a second membership
        if cached.is_none()
            && let Some(pin) = cache.email_pins.get(&*u.external_id)
            && *pin != email
        {
            self.plan.email_changes.push(EmailChange {
                external_id: u.external_id.to_string(),
                baseline_email: pin.clone(),
                directory_email: email,
            });
            return;
        }
        let action = match cached {
            None => Some(MemberAction::Invite),
            Some(c) if c.email != email => {
                self.plan.email_changes.push(EmailChange {
                    external_id: u.external_id.to_string(),
                    baseline_email: c.email.clone(),
                    directory_email: email.clone(),
                });
                // the member stays as the server has it (a full push lists it so that
                // overwriteExisting keeps it)
                full_push.then_some(MemberAction::Resend)
            }
            Some(_) if full_push => Some(MemberAction::Resend),
            Some(_) => None,
        };
        match action {
            Some(action) => self.plan.members.push(MemberChange {
                external_id: u.external_id.to_string(),
                email: cached.map_or(email, |c| c.email.clone()),
                action,
                member_id: None,
                previous_external_id: None,
            }),
            None => self.plan.unchanged_members += 1,
        }
    }

    /// The baseline's members the directory no longer returns (`seen`: the externalIds it
    /// returned), in id order: removed, or (owners, protected) listed and, with
    /// overwriteExisting, sent again so that the server keeps them.
    fn missing(&mut self, seen: &HashSet<&str>) {
        let cache = self.cache;
        let mut missing: Vec<(&String, &CachedMember)> = cache
            .members
            .iter()
            .filter(|(id, _)| !seen.contains(id.as_str()))
            .collect();
        missing.sort_by(|a, b| a.0.cmp(b.0));
        for (id, c) in missing {
            let action = if self.is_owner(id) {
                self.plan.kept.push(format!(
                    "{}: owner, not removed (no longer in the directory); {OWNER_ADVICE}",
                    c.email
                ));
                if !self.opts.overwrite_existing {
                    continue;
                }
                MemberAction::Resend
            } else if self.is_protected(&c.email) {
                self.plan.protected.push(format!(
                    "{}: not removed (no longer in the directory)",
                    c.email
                ));
                if !self.opts.overwrite_existing {
                    continue;
                }
                MemberAction::Resend
            } else {
                MemberAction::Remove(RemovalReason::Missing)
            };
            self.plan.members.push(MemberChange {
                external_id: id.clone(),
                email: c.email.clone(),
                action,
                member_id: None,
                previous_external_id: None,
            });
        }
    }
}

/// Adds the group half to a plan made by [`diff_members`] (`groups` is `None` when groups are
/// not synced).
pub fn diff_groups(
    plan: &mut Plan,
    groups: Option<&[NormGroup]>,
    desired: Option<&HashSet<Id>>,
    cache: &Cache,
    opts: &DiffOptions,
) {
    plan.groups_synced = groups.is_some();
    let Some(groups) = groups else {
        return;
    };
    let diff = GroupDiff {
        cache,
        opts,
        desired,
        full_push: plan.full_push,
        cascade: opts.cascade_removals && plan.users_synced,
        // Members this sync removes: the server drops them from every group itself.
        removed: plan
            .members
            .iter()
            .filter(|m| m.is_removal())
            .map(|m| m.external_id.as_str())
            .collect(),
    };
    let mut seen: HashSet<&str> = HashSet::with_capacity(groups.len());
    for g in groups {
        seen.insert(g.external_id.as_str());
        match diff.change(g, &mut plan.protected) {
            Some(change) => plan.groups.push(change),
            None => plan.unchanged_groups += 1,
        }
    }
    let mut stale: Vec<String> = cache
        .groups
        .keys()
        .filter(|id| !seen.contains(id.as_str()))
        .cloned()
        .collect();
    stale.sort();
    plan.stale_groups = stale;
}

/// What [`diff_groups`] compares each group against.
struct GroupDiff<'a> {
    cache: &'a Cache,
    opts: &'a DiffOptions,
    /// The members that stay after the sync (`None`: users are not synced).
    desired: Option<&'a HashSet<Id>>,
    full_push: bool,
    /// The server drops removed members from their groups itself, and users are synced.
    cascade: bool,
    /// Members this sync removes.
    removed: HashSet<&'a str>,
}

impl GroupDiff<'_> {
    /// Whether a baseline member counts in a group's baseline member list. On a server that
    /// drops removed members from their groups (`cascade`), members this sync removes no longer
    /// count: their going needs no group update. Otherwise (the cache baseline) every
    /// difference counts, so a group that loses a removed member is sent again without it.
    fn counts(&self, id: &Id) -> bool {
        !(self.cascade && self.removed.contains(&**id))
    }

    /// Whether a group's baseline member list differs from the new one.
    fn differs(&self, old: &[Id], new: &[Id]) -> bool {
        let mut effective = old.iter().filter(|id| self.counts(id));
        let mut new = new.iter();
        loop {
            match (effective.next(), new.next()) {
                (None, None) => return false,
                (Some(a), Some(b)) if a == b => continue,
                _ => return true,
            }
        }
    }

    /// The group's members after the sync, sorted: the directory's that stay, and the
    /// protected members the baseline has in it (each kept one listed in `protected`).
    fn members(
        &self,
        g: &NormGroup,
        cached: Option<&CachedGroup>,
        protected: &mut Vec<String>,
    ) -> Vec<Id> {
        let mut members: Vec<Id> = match self.desired {
            Some(keep) => g
                .members
                .iter()
                .filter(|m| keep.contains(*m))
                .cloned()
                .collect(),
            None => g.members.clone(),
        };
        // protected members the baseline has in the group stay in it
        if let Some(old) = cached.and_then(|c| c.members.as_ref())
            && !self.opts.protected.is_empty()
        {
            for id in old {
                let Some(m) = self.cache.members.get(&**id) else {
                    continue;
                };
                if self.opts.protected.contains(&m.email)
                    && !self.removed.contains(&**id)
                    && !members.contains(id)
                {
                    protected.push(format!(
                        "{}: kept in group `{}` (the directory takes it out)",
                        m.email, g.name
                    ));
                    members.push(id.clone());
                }
            }
        }
        // revoked members keep their groups until they are removed
        if let Some(old) = cached.and_then(|c| c.members.as_ref())
            && !self.opts.revoked_stay.is_empty()
        {
            for id in old {
                if self.opts.revoked_stay.contains(&**id) && !members.contains(id) {
                    members.push(id.clone());
                }
            }
        }
        members.sort_unstable();
        members
    }

    /// What the sync sends for one group; `None` when it is unchanged.
    fn change(&self, g: &NormGroup, protected: &mut Vec<String>) -> Option<GroupChange> {
        let cached = self.cache.groups.get(&g.external_id);
        let members = self.members(g, cached, protected);
        // (hashed only where it is needed: most groups of a sync are unchanged)
        let changed = |c: &CachedGroup| match &c.members {
            Some(old) => c.name != g.name || self.differs(old, &members),
            None => c.fingerprint != group_fingerprint(&g.name, &members),
        };
        let due = |c: &CachedGroup| match (self.opts.resend_groups_before, c.synced_at) {
            (Some(before), Some(at)) => at < before,
            _ => false,
        };
        let action = match cached {
            None => GroupAction::Create,
            Some(c) if changed(c) => GroupAction::Update,
            // back in the directory: sent again in case it was deleted by hand meanwhile
            Some(c) if self.full_push || due(c) || c.left_directory => GroupAction::Resend,
            Some(_) => return None,
        };
        let fingerprint = group_fingerprint(&g.name, &members);
        let removed_members = cached.and_then(|c| c.members.as_ref()).map_or(0, |old| {
            let new: HashSet<&Id> = members.iter().collect();
            old.iter()
                .filter(|id| self.counts(id) && !new.contains(id))
                .count()
        });
        Some(GroupChange {
            external_id: g.external_id.clone(),
            previous_name: cached.filter(|c| c.name != g.name).map(|c| c.name.clone()),
            name: g.name.clone(),
            members,
            fingerprint,
            action,
            previous_member_count: cached.map(|c| c.member_count),
            removed_members,
            repairs_drift: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }
    use crate::engine::normalize::{NormGroup, NormUser};

    fn u(id: &str, email: &str) -> NormUser {
        NormUser {
            reference_id: format!("cn={id}"),
            external_id: id.into(),
            email: Some(email.into()),
            disabled: false,
            deleted: false,
            unreadable: None,
            immutable_id: None,
        }
    }

    fn g(id: &str, members: &[&str]) -> NormGroup {
        NormGroup {
            reference_id: id.into(),
            external_id: id.into(),
            name: format!("Group {id}"),
            members: members.iter().map(|s| Id::from(*s)).collect(),
        }
    }

    fn norm(users: Vec<NormUser>, groups: Vec<NormGroup>) -> Normalized {
        Normalized {
            users: Some(users),
            groups: Some(groups),
            skipped: vec![],
        }
    }

    /// The cache after the server confirmed everything in `plan`.
    fn confirmed(plan: &Plan, mut cache: Cache) -> Cache {
        for m in &plan.members {
            if m.is_removal() {
                cache.members.remove(&m.external_id);
            } else {
                cache.members.insert(
                    m.external_id.clone(),
                    CachedMember {
                        email: m.email.clone(),
                    },
                );
            }
        }
        for gc in &plan.groups {
            cache.groups.insert(
                gc.external_id.clone(),
                CachedGroup {
                    name: gc.name.clone(),
                    fingerprint: gc.fingerprint.clone(),
                    member_count: gc.members.len(),
                    members: Some(gc.members.clone()),
                    synced_at: Some(time("2026-01-01T00:00:00+00:00")),
                    left_directory: false,
                },
            );
        }
        cache
    }

    #[test]
    fn first_sync_is_a_full_push_and_second_is_empty() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1", "2"])],
        );
        let p = diff(&n, &Cache::default(), &DiffOptions::default());
        assert!(p.full_push);
        assert_eq!(p.invites(), 2);
        assert_eq!(p.count_groups(GroupAction::Create), 1);
        let cache = confirmed(&p, Cache::default());
        let p2 = diff(&n, &cache, &DiffOptions::default());
        assert!(p2.is_empty());
        assert_eq!(p2.unchanged_members, 2);
        assert_eq!(p2.unchanged_groups, 1);
    }

    #[test]
    fn only_changes_are_sent() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1"]), g("H", &["2"])],
        );
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let mut n2 = norm(
            vec![u("1", "a2@x.com"), u("2", "b@x.com"), u("3", "c@x.com")],
            vec![g("G", &["1", "3"]), g("H", &["2"])],
        );
        let p = diff(&n2, &cache, &DiffOptions::default());
        assert!(!p.full_push);
        assert_eq!(p.invites(), 1);
        // an email change is not sent: it is shown
        assert_eq!(p.members.len(), 1);
        assert_eq!(
            p.email_changes,
            vec![EmailChange {
                external_id: "1".into(),
                baseline_email: "a@x.com".into(),
                directory_email: "a2@x.com".into(),
            }]
        );
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].external_id, "G");
        assert_eq!(p.groups[0].action, GroupAction::Update);
        assert_eq!(p.groups[0].previous_member_count, Some(1));
        // disabled without remove_disabled: still a member, unchanged
        n2.users.as_mut().unwrap()[1].disabled = true;
        let p = diff(&n2, &cache, &DiffOptions::default());
        assert_eq!(p.removals(), 0);
    }

    #[test]
    fn disabled_and_deleted_users_are_removed_and_dropped_from_groups() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com"), u("3", "c@x.com")],
            vec![g("G", &["1", "2", "3"])],
        );
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let mut n2 = n.clone();
        n2.users.as_mut().unwrap()[1].disabled = true;
        n2.users.as_mut().unwrap()[2].deleted = true;
        let opts = DiffOptions {
            remove_disabled: true,
            ..Default::default()
        };
        let p = diff(&n2, &cache, &opts);
        let removed: Vec<(&str, MemberAction)> = p
            .members
            .iter()
            .map(|m| (m.external_id.as_str(), m.action))
            .collect();
        assert_eq!(
            removed,
            vec![
                ("2", MemberAction::Remove(RemovalReason::Disabled)),
                ("3", MemberAction::Remove(RemovalReason::Deleted))
            ]
        );
        // against the cache, the group is sent again without them (a server may keep a revoked
        // member's group rows)
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].members, vec![Id::from("1")]);
        assert_eq!(p.groups[0].removed_members, 2);
        // against an organization that drops removed members itself, no group update is needed
        let org = DiffOptions {
            cascade_removals: true,
            ..opts
        };
        let p = diff(&n2, &cache, &org);
        assert!(p.groups.is_empty(), "{:?}", p.groups);
        assert_eq!(p.unchanged_groups, 1);
    }

    #[test]
    fn group_updates_follow_the_confirmed_member_lists() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com"), u("3", "c@x.com")],
            vec![g("G", &["1", "2", "3"]), g("H", &["1", "3"])],
        );
        let opts = DiffOptions {
            remove_missing_users: true,
            cascade_removals: true,
            ..Default::default()
        };
        let cache = confirmed(&diff(&n, &Cache::default(), &opts), Cache::default());

        // user 3 leaves the directory (removed from the org) and 2 leaves group G only
        let n2 = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1"]), g("H", &["1"])],
        );
        let p = diff(&n2, &cache, &opts);
        assert_eq!(p.removals(), 1);
        assert_eq!(
            p.groups.len(),
            1,
            "G changes because 2 stays in the org; H does not"
        );
        assert_eq!(p.groups[0].external_id, "G");
        assert_eq!(p.groups[0].members, vec![Id::from("1")]);
        let mut cache = confirmed(&p, cache);
        assert_eq!(
            cache.groups["H"].members,
            Some(vec![Id::from("1"), Id::from("3")])
        );
        // the organization read back: the server took 3 out of H itself
        cache.groups.get_mut("H").unwrap().members = Some(vec![Id::from("1")]);

        // 3 comes back into H: H must be sent
        let n3 = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com"), u("3", "c@x.com")],
            vec![g("G", &["1"]), g("H", &["1", "3"])],
        );
        let p = diff(&n3, &cache, &opts);
        assert_eq!(p.invites(), 1);
        assert_eq!(
            p.groups
                .iter()
                .map(|g| g.external_id.as_str())
                .collect::<Vec<_>>(),
            vec!["H"]
        );

        // a renamed group is an update even with the same members
        let mut n4 = n3.clone();
        n4.groups.as_mut().unwrap()[0].name = "Renamed".into();
        let cache = confirmed(&diff(&n3, &cache, &opts), cache);
        let p = diff(&n4, &cache, &opts);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].name, "Renamed");
        assert_eq!(p.groups[0].previous_name.as_deref(), Some("Group G"));
        assert_eq!(p.groups[0].label(), "rename from `Group G`");
    }

    #[test]
    fn against_the_cache_groups_losing_or_regaining_a_member_are_sent() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1", "2"]), g("H", &["1"])],
        );
        let opts = DiffOptions {
            remove_missing_users: true,
            ..Default::default()
        };
        let cache = confirmed(&diff(&n, &Cache::default(), &opts), Cache::default());
        // 2 leaves the directory: removed, and G is sent without it
        let n2 = norm(
            vec![u("1", "a@x.com")],
            vec![g("G", &["1"]), g("H", &["1"])],
        );
        let p = diff(&n2, &cache, &opts);
        assert_eq!(p.removals(), 1);
        let sent: Vec<&str> = p.groups.iter().map(|g| g.external_id.as_str()).collect();
        assert_eq!(sent, ["G"]);
        let cache = confirmed(&p, cache);
        // 2 comes back in no group: nothing but the invite (G already lost it)
        let n3 = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1"]), g("H", &["1"])],
        );
        let p = diff(&n3, &cache, &opts);
        assert_eq!(p.invites(), 1);
        assert!(p.groups.is_empty());
    }

    #[test]
    fn protected_members_are_never_removed_or_taken_out_of_groups() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "boss@x.com")],
            vec![g("G", &["1", "2"])],
        );
        let mut opts = DiffOptions {
            remove_missing_users: true,
            ..Default::default()
        };
        let cache = confirmed(&diff(&n, &Cache::default(), &opts), Cache::default());
        opts.protected = std::sync::Arc::new(["boss@x.com".to_string()].into_iter().collect());
        // boss leaves the directory and its group
        let n2 = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"])]);
        let p = diff(&n2, &cache, &opts);
        assert_eq!(p.removals(), 0);
        assert!(p.groups.is_empty(), "G keeps boss: {:?}", p.groups);
        assert!(
            p.protected.iter().any(|s| s.contains("boss@x.com")),
            "{:?}",
            p.protected
        );
        // deleted in the directory: still not removed
        let mut n3 = n.clone();
        n3.users.as_mut().unwrap()[1].deleted = true;
        assert_eq!(diff(&n3, &cache, &opts).removals(), 0);
        // overwrite_existing lists it, so the server keeps it
        opts.overwrite_existing = true;
        let p = diff(&n2, &cache, &opts);
        assert_eq!(p.removals(), 0);
        assert!(
            p.members
                .iter()
                .any(|m| m.email == "boss@x.com" && m.action == MemberAction::Resend)
        );
        // without protection the same plan removes it
        opts.protected = Default::default();
        assert_eq!(diff(&n2, &cache, &opts).removals(), 1);
    }

    #[test]
    fn groups_confirmed_long_ago_are_sent_again() {
        let n = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"])]);
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let mut opts = DiffOptions {
            resend_groups_before: Some(time("2025-01-01T00:00:00+00:00")),
            ..Default::default()
        };
        assert!(diff(&n, &cache, &opts).is_empty());
        opts.resend_groups_before = Some(time("2026-06-01T00:00:00+00:00"));
        let p = diff(&n, &cache, &opts);
        assert_eq!(p.count_groups(GroupAction::Resend), 1);
        assert!(p.members.is_empty());
    }

    #[test]
    fn drift_repairs_are_marked() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1", "2"])],
        );
        let sent = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        // someone took 2 out of G in the organization
        let mut org = sent.clone();
        org.groups.get_mut("G").unwrap().members = Some(vec![Id::from("1")]);
        let mut p = diff(&n, &org, &DiffOptions::default());
        let fingerprints = sent
            .groups
            .iter()
            .map(|(id, g)| (id.clone(), g.fingerprint.clone()))
            .collect();
        mark_drift_repairs(&mut p, &fingerprints);
        assert_eq!(p.groups.len(), 1);
        assert!(p.groups[0].repairs_drift);
        assert!(p.groups[0].label().contains("repairs"));
    }

    #[test]
    fn caches_without_member_lists_compare_fingerprints() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1", "2"])],
        );
        let mut cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        cache.groups.get_mut("G").unwrap().members = None;
        assert!(diff(&n, &cache, &DiffOptions::default()).is_empty());
        let n2 = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1"])],
        );
        assert_eq!(diff(&n2, &cache, &DiffOptions::default()).groups.len(), 1);
    }

    #[test]
    fn deleted_user_unknown_to_the_cache_is_not_sent_incrementally() {
        let n = norm(vec![u("1", "a@x.com")], vec![]);
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let mut dead = u("9", "z@x.com");
        dead.deleted = true;
        let n2 = norm(vec![u("1", "a@x.com"), dead], vec![]);
        assert!(diff(&n2, &cache, &DiffOptions::default()).is_empty());
        // but a full push makes sure it is gone
        let p = diff(&n2, &Cache::default(), &DiffOptions::default());
        assert_eq!(p.removals(), 1);
    }

    #[test]
    fn missing_users_are_removed_only_when_asked() {
        let n = norm(vec![u("1", "a@x.com"), u("2", "b@x.com")], vec![]);
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let n2 = norm(vec![u("1", "a@x.com")], vec![]);
        assert!(diff(&n2, &cache, &DiffOptions::default()).is_empty());
        let p = diff(
            &n2,
            &cache,
            &DiffOptions {
                remove_missing_users: true,
                ..Default::default()
            },
        );
        assert_eq!(p.removals(), 1);
        assert_eq!(p.members[0].email, "b@x.com");
        assert_eq!(
            p.members[0].action,
            MemberAction::Remove(RemovalReason::Missing)
        );
    }

    #[test]
    fn overwrite_existing_resends_everything_and_shows_implicit_removals() {
        let n = norm(
            vec![u("1", "a@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1"])],
        );
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let n2 = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"])]);
        let p = diff(
            &n2,
            &cache,
            &DiffOptions {
                overwrite_existing: true,
                ..Default::default()
            },
        );
        assert!(p.full_push);
        assert_eq!(p.resends(), 1);
        assert_eq!(p.removals(), 1);
        assert_eq!(p.count_groups(GroupAction::Resend), 1);
    }

    #[test]
    fn stale_groups_are_reported() {
        let n = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"]), g("H", &[])]);
        let cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        let n2 = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"])]);
        let p = diff(&n2, &cache, &DiffOptions::default());
        assert!(p.is_empty());
        assert_eq!(p.stale_groups, vec!["H".to_string()]);
    }

    /// A group that left the directory stays in the organization (the import cannot delete it):
    /// the cache keeps it, marked, and it is reported while it is away. When it comes back it is
    /// sent again, and what it loses is counted for the group guard.
    #[test]
    fn a_group_back_in_the_directory_is_compared_with_what_it_had() {
        let users = || vec![u("1", "a@x.com"), u("2", "b@x.com"), u("3", "c@x.com")];
        let n = norm(users(), vec![g("G", &["1"]), g("H", &["1", "2", "3"])]);
        let mut cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        cache.groups.get_mut("H").unwrap().left_directory = true;
        let without = norm(users(), vec![g("G", &["1"])]);
        let p = diff(&without, &cache, &DiffOptions::default());
        assert!(p.is_empty());
        assert_eq!(
            p.stale_groups,
            vec!["H".to_string()],
            "still in the organization"
        );

        // back unchanged: sent again (it may have been deleted by hand meanwhile)
        let p = diff(&n, &cache, &DiffOptions::default());
        assert_eq!(p.count_groups(GroupAction::Resend), 1);
        assert_eq!(p.groups[0].external_id, "H");
        assert_eq!(p.groups[0].removed_members, 0);

        // back with one member: two of its three references are taken out
        let fewer = norm(users(), vec![g("G", &["1"]), g("H", &["3"])]);
        let p = diff(&fewer, &cache, &DiffOptions::default());
        assert_eq!(p.count_groups(GroupAction::Update), 1);
        let h = &p.groups[0];
        assert_eq!((h.removed_members, h.previous_member_count), (2, Some(3)));
    }

    /// Issue 23 item 3: a group the organization did not list (a short group list) is a create;
    /// what the cache last confirmed it had is counted for the group guard instead of nothing.
    #[test]
    fn a_create_is_counted_against_the_cached_row_of_the_group() {
        let users = || {
            (1..=6)
                .map(|i| u(&i.to_string(), &format!("{i}@x.com")))
                .collect()
        };
        let n = norm(users(), vec![g("G", &["1"]), g("H", &["2"])]);
        let mut p = diff(&n, &Cache::default(), &DiffOptions::default());
        let rows: std::collections::HashMap<String, Vec<Id>> = [(
            "G".to_string(),
            (1..=6).map(|i| Id::from(i.to_string())).collect::<Vec<_>>(),
        )]
        .into();
        count_creates_against_rows(&mut p, &rows);
        let g = p.groups.iter().find(|g| g.external_id == "G").unwrap();
        assert_eq!((g.removed_members, g.previous_member_count), (5, Some(6)));
        let h = p.groups.iter().find(|g| g.external_id == "H").unwrap();
        assert_eq!((h.removed_members, h.previous_member_count), (0, None));
        let limits = crate::engine::GuardLimits {
            max_group_removal_percent: 50,
            ..Default::default()
        };
        assert!(crate::engine::check_group_guard(&p, limits).is_some());
    }

    /// Issue 23 item 6: an owner is never planned for removal (the server refuses it, and the
    /// check after the push would fail every sync); the plan says it was kept and why.
    #[test]
    fn owners_are_never_removed() {
        let n = norm(
            vec![u("1", "a@x.com"), u("o", "owner@x.com")],
            vec![g("G", &["1", "o"])],
        );
        let mut cache = confirmed(
            &diff(&n, &Cache::default(), &DiffOptions::default()),
            Cache::default(),
        );
        cache.owners.insert("o".into());
        cache.complete = true;
        let mut opts = DiffOptions {
            remove_missing_users: true,
            remove_disabled: true,
            cascade_removals: true,
            ..Default::default()
        };
        // the owner leaves the directory
        let gone = norm(vec![u("1", "a@x.com")], vec![g("G", &["1"])]);
        let p = diff(&gone, &cache, &opts);
        assert_eq!(p.removals(), 0, "{:?}", p.members);
        assert_eq!(p.kept.len(), 1);
        assert!(
            p.kept[0].contains("owner@x.com") && p.kept[0].contains("owner, not removed"),
            "{:?}",
            p.kept
        );
        // deleted or disabled in the directory: kept too, and stays in its groups
        for flag in [true, false] {
            let mut n2 = n.clone();
            let o = &mut n2.users.as_mut().unwrap()[1];
            if flag {
                o.deleted = true
            } else {
                o.disabled = true
            }
            let p = diff(&n2, &cache, &opts);
            assert_eq!(p.removals(), 0);
            assert!(p.groups.is_empty(), "{:?}", p.groups);
            assert!(p.kept[0].contains("in the directory"), "{:?}", p.kept);
        }
        // overwrite_existing lists it, so every server keeps it
        opts.overwrite_existing = true;
        let p = diff(&gone, &cache, &opts);
        assert_eq!(p.removals(), 0);
        assert!(
            p.members
                .iter()
                .any(|m| m.external_id == "o" && m.action == MemberAction::Resend)
        );
        // an admin (not an owner) is removed as usual
        cache.owners.clear();
        assert_eq!(diff(&gone, &cache, &opts).removals(), 1);
    }

    /// Issue 23 item 4: a plan that cannot see departures says so.
    #[test]
    fn departures_that_cannot_be_seen_are_warned_about() {
        let n = norm(vec![u("1", "a@x.com")], vec![]);
        // no baseline
        let p = diff(&n, &Cache::default(), &DiffOptions::default());
        assert_eq!(p.warnings, vec![NO_BASELINE_DEPARTURES.to_string()]);
        assert!(p.warnings[0].contains("departures cannot be detected"));
        assert!(
            serde_json::to_string(&p)
                .unwrap()
                .contains("departures cannot be detected")
        );
        // an organization (even empty) is a baseline
        let org = Cache {
            complete: true,
            ..Cache::default()
        };
        assert!(diff(&n, &org, &DiffOptions::default()).warnings.is_empty());
        // a cache started without a baseline, when departures are asked for
        let mut cache = confirmed(&p, Cache::default());
        assert!(
            diff(&n, &cache, &DiffOptions::default())
                .warnings
                .is_empty()
        );
        let opts = DiffOptions {
            remove_missing_users: true,
            ..Default::default()
        };
        assert_eq!(
            diff(&n, &cache, &opts).warnings,
            vec![PARTIAL_CACHE_DEPARTURES.to_string()]
        );
        cache.complete = true;
        assert!(diff(&n, &cache, &opts).warnings.is_empty());
    }

    /// Issue 23 item 4: a pending email change survives `clear-cache` (its pin): the full push
    /// after it does not invite the new address, which a server matching by email (Vaultwarden)
    /// would make a second membership; the member stays in its groups.
    #[test]
    fn a_pending_email_change_is_not_sent_after_the_cache_is_cleared() {
        let n = norm(
            vec![u("1", "a2@x.com"), u("2", "b@x.com")],
            vec![g("G", &["1", "2"])],
        );
        let mut cleared = Cache::default();
        cleared.email_pins.insert("1".into(), "a@x.com".into());
        let p = diff(&n, &cleared, &DiffOptions::default());
        assert!(p.full_push);
        assert!(
            !p.members.iter().any(|m| m.external_id == "1"),
            "{:?}",
            p.members
        );
        assert_eq!(
            p.email_changes,
            vec![EmailChange {
                external_id: "1".into(),
                baseline_email: "a@x.com".into(),
                directory_email: "a2@x.com".into(),
            }]
        );
        assert_eq!(p.groups[0].members, vec![Id::from("1"), Id::from("2")]);
        // the directory went back to the old address: nothing pending, sent as usual
        let back = norm(vec![u("1", "a@x.com")], vec![]);
        let p = diff(&back, &cleared, &DiffOptions::default());
        assert!(p.email_changes.is_empty());
        assert_eq!(p.invites(), 1);
    }

    #[test]
    fn without_user_sync_group_members_are_not_filtered() {
        let n = Normalized {
            users: None,
            groups: Some(vec![g("G", &["x", "y"])]),
            skipped: vec![],
        };
        let p = diff(&n, &Cache::default(), &DiffOptions::default());
        assert!(p.members.is_empty());
        assert_eq!(p.groups[0].members.len(), 2);
    }
}
