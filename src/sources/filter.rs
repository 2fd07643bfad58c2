//! The cloud directories' filter mini-language (upstream §4.0): `include:a,b` or `exclude:a,b`
//! as the set clause, then `|` and a native query for the vendor's API; plus the group-scoped
//! user pruning that a group set filter implies.

use std::collections::HashSet;

use crate::engine::{DirGroup, DirUser};

/// Keep only listed values, or drop them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetClause {
    Include(HashSet<String>),
    Exclude(HashSet<String>),
}

/// A parsed filter: the set clause (keyword, values) and the native query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The keyword as written (lower-cased) and its values (trimmed, lower-cased). Keywords
    /// other than include/exclude are kept for sources that know them (Entra's includeGroup).
    pub keyword: Option<String>,
    pub values: Vec<String>,
    pub query: Option<String>,
    /// Further `|` segments (Entra's secondary clauses).
    pub extra: Vec<String>,
}

impl Filter {
    pub fn parse(raw: Option<&str>) -> Filter {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Filter::default();
        };
        let mut segments = raw.split('|');
        let set = segments.next().unwrap_or_default();
        let query = segments
            .next()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string);
        let extra = segments.map(|s| s.trim().to_string()).collect();
        let parts: Vec<&str> = set.split(':').collect();
        let (keyword, values) = if parts.len() == 2 {
            let values = parts[1]
                .split(',')
                .map(|v| v.trim().to_lowercase())
                .collect();
            (Some(parts[0].trim().to_lowercase()), values)
        } else {
            (None, Vec::new())
        };
        Filter {
            keyword,
            values,
            query,
            extra,
        }
    }

    /// The include/exclude clause, if the keyword is one.
    pub fn set(&self) -> Option<SetClause> {
        let values: HashSet<String> = self.values.iter().cloned().collect();
        match self.keyword.as_deref() {
            Some("include") => Some(SetClause::Include(values)),
            Some("exclude") => Some(SetClause::Exclude(values)),
            _ => None,
        }
    }

    /// Whether a candidate (email or group name) passes the set clause.
    pub fn passes(&self, candidate: Option<&str>) -> bool {
        let c = candidate
            .map(|c| c.trim().to_lowercase())
            .unwrap_or_else(|| "--".into());
        match self.set() {
            Some(SetClause::Include(s)) => s.contains(&c),
            Some(SetClause::Exclude(s)) => !s.contains(&c),
            None => true,
        }
    }
}

/// Group-scoped user pruning: with a group set filter, keep only users that are deleted, disabled
/// and to be removed, or direct members of a kept group.
pub fn prune_users_to_groups(
    users: &mut Vec<DirUser>,
    groups: &[DirGroup],
    group_filter: &Filter,
    remove_disabled: bool,
) {
    if group_filter.set().is_none() {
        return;
    }
    let members: HashSet<&str> = groups
        .iter()
        .flat_map(|g| g.user_members.iter().map(|m| &**m))
        .collect();
    let keep: Vec<bool> = users
        .iter()
        .map(|u| u.deleted || (u.disabled && remove_disabled) || members.contains(&*u.external_id))
        .collect();
    let mut it = keep.into_iter();
    users.retain(|_| it.next().unwrap_or(false));
}

/// The snapshot of a cloud directory: group-scoped pruning when both users and groups are
/// synced, and only the object types the sync options ask for.
pub fn snapshot(
    sync: &crate::config::SyncConfig,
    mut users: Vec<DirUser>,
    groups: Vec<DirGroup>,
    group_filter: &Filter,
) -> crate::engine::Snapshot {
    if sync.users && sync.groups {
        prune_users_to_groups(&mut users, &groups, group_filter, sync.remove_disabled);
    }
    crate::engine::Snapshot {
        users: sync.users.then_some(users),
        groups: sync.groups.then_some(groups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clause_and_query() {
        let f = Filter::parse(Some(
            "exclude: Joe@Company.com , x@y.z | orgUnitPath=/Engineering",
        ));
        assert_eq!(f.query.as_deref(), Some("orgUnitPath=/Engineering"));
        assert!(!f.passes(Some("joe@company.com")));
        assert!(f.passes(Some("ann@company.com")));
        let f = Filter::parse(Some("include:a@x.com,b@x.com"));
        assert!(f.passes(Some(" A@x.com")));
        assert!(!f.passes(Some("c@x.com")));
        assert!(!f.passes(None));
        let f = Filter::parse(Some("|name:Integration*"));
        assert_eq!(f.set(), None);
        assert_eq!(f.query.as_deref(), Some("name:Integration*"));
        // three parts or another keyword: no set filter
        assert_eq!(Filter::parse(Some("include:a:b")).set(), None);
        assert_eq!(Filter::parse(Some("whatever:a")).set(), None);
        let f = Filter::parse(Some("includeGroup:G1,G2|excludeGroup:g3|exclude:a@x.com"));
        assert_eq!(f.keyword.as_deref(), Some("includegroup"));
        assert_eq!(f.values, vec!["g1", "g2"]);
        assert_eq!(f.query.as_deref(), Some("excludeGroup:g3"));
        assert_eq!(f.extra, vec!["exclude:a@x.com"]);
    }

    #[test]
    fn cloud_filters_are_validated() {
        use crate::config::{DirectoryType, check_cloud_filter};
        assert!(check_cloud_filter(DirectoryType::Okta, true, "include:a@x.com").is_ok());
        assert!(check_cloud_filter(DirectoryType::Okta, true, "|status eq \"ACTIVE\"").is_ok());
        assert!(
            check_cloud_filter(DirectoryType::Entra, true, "includeGroup:g1|exclude:a").is_ok()
        );
        let e = check_cloud_filter(DirectoryType::Okta, true, "includeGroup:g1").unwrap_err();
        assert!(e.contains("includeGroup"), "{e}");
        assert!(check_cloud_filter(DirectoryType::Entra, false, "includeGroup:g1").is_err());
        // administrative units: Entra group filters only
        assert!(
            check_cloud_filter(DirectoryType::Entra, false, "includeAdministrativeUnit:au1")
                .is_ok()
        );
        assert!(
            check_cloud_filter(DirectoryType::Entra, false, "excludeAdministrativeUnit:a,b")
                .is_ok()
        );
        assert!(
            check_cloud_filter(DirectoryType::Entra, true, "includeAdministrativeUnit:au1")
                .is_err()
        );
        assert!(
            check_cloud_filter(DirectoryType::Okta, false, "includeAdministrativeUnit:au1")
                .is_err()
        );
        assert!(check_cloud_filter(DirectoryType::Okta, true, "include:a:b").is_err());
    }

    #[test]
    fn pruning_keeps_members_of_kept_groups() {
        let u = |id: &str, disabled: bool, deleted: bool| DirUser {
            reference_id: id.into(),
            external_id: id.into(),
            email: Some(format!("{id}@x.com")),
            disabled,
            deleted,
            unreadable: None,
            immutable_id: None,
        };
        let mut users = vec![
            u("a", false, false),
            u("b", false, false),
            u("c", false, true),
            u("d", true, false),
        ];
        let groups = vec![DirGroup {
            reference_id: "g".into(),
            external_id: "g".into(),
            name: Some("G".into()),
            user_members: vec!["a".into()],
            group_members: vec![],
            unreadable: None,
        }];
        let f = Filter::parse(Some("include:g"));
        prune_users_to_groups(&mut users, &groups, &f, true);
        let ids: Vec<&str> = users.iter().map(|u| &*u.external_id).collect();
        assert_eq!(ids, vec!["a", "c", "d"]);
    }
}
