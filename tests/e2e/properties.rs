//! Property tests (proptest) of the parts that read untrusted input or encode what is sent: the
//! cloud filter language, config parsing and the `config set`/`get` round trip, the conversion
//! of cloud vendors' JSON users and groups, and the import body encoder with its batching.
//!
//! Case count: 64 by default (CI), more with `PROPTEST_CASES=10000`.

use std::collections::{BTreeSet, HashSet};

use directory_connector::bitwarden::wire::ImportRequest;
use directory_connector::config::{self, DirectoryType, KEYS, KeyKind};
use directory_connector::engine::diff::{
    GroupAction, GroupChange, MemberAction, MemberChange, Plan, RemovalReason,
};
use directory_connector::engine::normalize::{is_valid_email, normalize_users};
use directory_connector::engine::{DirGroup, DirUser, Id, build_batches};
use directory_connector::errors::Failure;
use directory_connector::sources::filter::{Filter, prune_users_to_groups};
use directory_connector::sources::{entra, google, okta, onelogin};
use proptest::prelude::*;
use serde_json::Value;

/// 64 cases unless PROPTEST_CASES says otherwise.
fn cases() -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

/// Strings with the characters that matter to the parsers: separators, white space, case,
/// non-ASCII letters whose lower case differs in length, control characters and emoji.
fn weird_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9@.:,|\\- _]{0,24}",
        2 => "[ \t\n:,|@İıßΣσςÅ\u{0}\u{1}\u{200b}\u{feff}😀a-c]{0,16}",
        1 => any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cloud filter language
// ---------------------------------------------------------------------------------------------

/// A value for a set clause: no separator characters (`,` `|` `:`), any case and padding.
fn clause_value() -> impl Strategy<Value = String> {
    "[ ]{0,2}[a-zA-Z0-9@.İßΣ_-]{1,8}[ ]{0,2}"
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

proptest! {
    #![proptest_config(cases())]

    /// Any string parses (no error type: a filter without a recognised clause keeps everything)
    /// and every accessor answers; the cloud validation answers Ok or a message.
    #[test]
    fn any_filter_string_parses_without_panic(raw in weird_string(), candidate in weird_string()) {
        let f = Filter::parse(Some(&raw));
        let _ = f.set();
        let _ = f.passes(Some(&candidate));
        let _ = f.passes(None);
        for kind in [DirectoryType::Entra, DirectoryType::Okta, DirectoryType::Google, DirectoryType::Onelogin] {
            for users in [true, false] {
                if let Err(e) = config::check_cloud_filter(kind, users, &raw) {
                    prop_assert!(!e.trim().is_empty(), "an empty error for {raw:?}");
                }
            }
        }
    }

    /// `include:`/`exclude:` keep exactly the candidates whose trimmed, lower-cased form is (or
    /// is not) listed, whatever the case and padding on either side; the query after `|` is
    /// kept trimmed.
    #[test]
    fn include_and_exclude_select_exactly_the_listed_values(
        include in any::<bool>(),
        keyword_case in any::<bool>(),
        values in prop::collection::vec(clause_value(), 1..5),
        candidates in prop::collection::vec(clause_value(), 0..8),
        query in proptest::option::of("[ ]{0,2}[a-zA-Z=/ ]{0,12}"),
    ) {
        let mut keyword = if include { "include" } else { "exclude" }.to_string();
        if keyword_case {
            keyword = keyword.to_uppercase();
        }
        let mut raw = format!(" {keyword} :{}", values.join(","));
        if let Some(q) = &query {
            raw.push('|');
            raw.push_str(q);
        }
        let f = Filter::parse(Some(&raw));
        prop_assert!(f.set().is_some(), "{raw:?} has a set clause");
        let listed: HashSet<String> = values.iter().map(|v| norm(v)).collect();
        // the listed values themselves, then other candidates
        for c in values.iter().chain(candidates.iter()) {
            let inside = listed.contains(&norm(c));
            prop_assert_eq!(f.passes(Some(c)), inside == include, "candidate {:?} of {:?}", c, raw);
            // the filter and the engine agree on the form of an email
            prop_assert_eq!(f.passes(Some(&norm(c))), f.passes(Some(c)));
        }
        let want_query = query.as_deref().map(str::trim).filter(|q| !q.is_empty());
        prop_assert_eq!(f.query.as_deref(), want_query);
    }

    /// Group-scoped pruning keeps, in order, exactly the deleted users, the disabled ones when
    /// they are to be removed, and the direct members of the kept groups; without a set clause
    /// nothing is pruned.
    #[test]
    fn pruning_keeps_exactly_members_and_removals(
        users in prop::collection::vec((0u8..8, any::<bool>(), any::<bool>()), 0..10),
        groups in prop::collection::vec(prop::collection::vec(0u8..8, 0..5), 0..4),
        remove_disabled in any::<bool>(),
        with_clause in any::<bool>(),
    ) {
        let mk: Vec<DirUser> = users.iter().map(|(id, disabled, deleted)| DirUser {
            reference_id: format!("u{id}"),
            external_id: Id::from(format!("u{id}")),
            email: Some(format!("u{id}@x.com")),
            disabled: *disabled,
            deleted: *deleted,
            unreadable: None,
            immutable_id: None,
        }).collect();
        let gs: Vec<DirGroup> = groups.iter().enumerate().map(|(i, m)| {
            let mut g = DirGroup::new(&format!("g{i}"), Some(format!("G{i}")));
            g.user_members = m.iter().map(|id| Id::from(format!("u{id}"))).collect();
            g
        }).collect();
        let f = Filter::parse(Some(if with_clause { "include:g0,g1,g2,g3" } else { "|q" }));
        let mut pruned = mk.clone();
        prune_users_to_groups(&mut pruned, &gs, &f, remove_disabled);
        let members: HashSet<&str> = gs.iter().flat_map(|g| g.user_members.iter().map(|m| &**m)).collect();
        let want: Vec<DirUser> = mk.iter().filter(|u| {
            !with_clause || u.deleted || (u.disabled && remove_disabled) || members.contains(&*u.external_id)
        }).cloned().collect();
        prop_assert_eq!(pruned, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Config parsing and the editing path
// ---------------------------------------------------------------------------------------------

/// TOML-looking text made of the real sections and keys, with values of any type (right or
/// wrong), plus some noise lines.
fn toml_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>());
    let value = prop_oneof![
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("70000".to_string()),
        Just("[]".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("nan".to_string()),
        (0i64..100).prop_map(|n| n.to_string()),
        "[a-zA-Z0-9 :/._-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        "[a-z=\\[\\]\"' ]{0,8}",
    ];
    let line = prop_oneof![
        3 => (key, value).prop_map(|(k, v)| {
            let (section, field) = k.split_once('.').unwrap_or((k, ""));
            format!("[{section}]\n{field} = {v}")
        }),
        1 => "[a-z_.\\[\\]=\" #]{0,16}",
    ];
    prop::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n"))
}

/// A value `config set` accepts for a key of this kind, and what `config get` must show.
fn settable(kind: KeyKind) -> BoxedStrategy<(String, Option<String>)> {
    match kind {
        KeyKind::Bool => (any::<bool>(), 0usize..4, any::<bool>())
            .prop_map(|(b, form, upper)| {
                let forms = if b { ["true", "yes", "on", "1"] } else { ["false", "no", "off", "0"] };
                let raw = if upper { forms[form].to_uppercase() } else { forms[form].to_string() };
                (format!(" {raw} "), Some(b.to_string()))
            })
            .boxed(),
        // anywhere in the key's range (0 too where 0 turns the feature off)
        KeyKind::Int(range) => {
            let zero = range.zero_off;
            (range.min..=range.max, any::<bool>())
                .prop_map(move |(n, off)| {
                    let n = if zero && off { 0 } else { n };
                    (format!("{n} "), Some(n.to_string()))
                })
                .boxed()
        }
        KeyKind::Host => "[a-z]{1,8}(\\.[a-z]{2,4}){0,2}"
            .prop_map(|h| (h.clone(), Some(h)))
            .boxed(),
        KeyKind::Enum(options) => (prop::sample::select(options.to_vec()), any::<bool>())
            .prop_map(|(o, upper)| {
                let raw = if upper { o.to_uppercase() } else { o.to_string() };
                (raw, Some(o.to_string()))
            })
            .boxed(),
        KeyKind::Url => ("(https?://)?[a-z]{1,8}(\\.[a-z]{2,4}){1,2}(:[1-9][0-9]{0,3})?(/[a-z]{1,5}){0,2}/{0,2}")
            .prop_map(|raw| {
                let want = config::normalize_url(&raw);
                (raw, Some(want))
            })
            .boxed(),
        KeyKind::Secret => (any::<bool>(), "[A-Za-z_][A-Za-z0-9_/.]{0,10}")
            .prop_map(|(env, name)| {
                let r = format!("{}:{name}", if env { "env" } else { "file" });
                (r.clone(), Some(r))
            })
            .boxed(),
        KeyKind::List => prop::collection::vec("[ ]{0,2}[a-zA-Z0-9@._-]{0,6}[ ]{0,2}", 0..4)
            .prop_map(|items| {
                let kept: Vec<String> = items.iter().map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect();
                let want = (!kept.is_empty()).then(|| kept.join(", "));
                (items.join(","), want)
            })
            .boxed(),
        KeyKind::Str | KeyKind::Path => weird_string().prop_map(|s| (s.clone(), Some(s))).boxed(),
    }
}

/// [`settable`], with the lists whose entries must be email addresses given addresses, the
/// schedule a cron expression that fires, DNs and LDAP filters (`config set` refuses any other).
fn settable_for(key: &str, kind: KeyKind) -> BoxedStrategy<(String, Option<String>)> {
    if key == "service.schedule" {
        return prop::sample::select(vec!["*/30 * * * *", "0 2 * * *", "15 */6 * * 1-5"])
            .prop_map(|c| (c.to_string(), Some(c.to_string())))
            .boxed();
    }
    if ["ldap.root_path", "sync.user_path", "sync.group_path"].contains(&key) {
        // `config set` refuses a value that is not a DN
        return "[a-zA-Z]{1,4}=[a-zA-Z0-9]{1,5}(,[a-z]{1,3}=[a-z0-9 ]{0,3}[a-z0-9])*"
            .prop_map(|dn| (dn.clone(), Some(dn)))
            .boxed();
    }
    if key == "sync.user_filter" || key == "sync.group_filter" {
        // with an LDAP directory, `config set` refuses a filter that does not parse
        return "\\([a-z]{1,4}=[a-zA-Z0-9*]{1,5}\\)"
            .prop_map(|f| (f.clone(), Some(f)))
            .boxed();
    }
    if key != "sync.protected_emails" {
        return settable(kind);
    }
    prop::collection::vec(
        "[ ]{0,2}[a-z0-9]([a-z0-9._-]{0,4}[a-z0-9])?@[a-z]{1,6}\\.[a-z]{2,3}[ ]{0,2}",
        0..4,
    )
    .prop_map(|items| {
        let kept: Vec<String> = items.iter().map(|i| i.trim().to_string()).collect();
        let want = (!kept.is_empty()).then(|| kept.join(", "));
        (items.join(","), want)
    })
    .boxed()
}

/// A few (key, raw value, expected shown value) settings.
fn settings() -> impl Strategy<Value = Vec<(&'static str, String, Option<String>)>> {
    prop::collection::vec(prop::sample::select(KEYS.to_vec()), 1..5).prop_flat_map(|keys| {
        keys.into_iter()
            .map(|(k, kind, _)| settable_for(k, kind).prop_map(move |(raw, want)| (k, raw, want)))
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(cases())]

    /// Any text parses to a config or a configuration error with a message, never a panic.
    #[test]
    fn any_text_is_a_config_or_a_config_error(text in prop_oneof![toml_like(), any::<String>()]) {
        match config::parse(&text) {
            Ok(_) => {}
            Err(Failure::Config(msg)) => prop_assert!(!msg.trim().is_empty(), "empty error for {text:?}"),
            Err(other) => prop_assert!(false, "not a configuration error: {other:?}"),
        }
    }

    /// Any bytes as config.toml load to a config or an error (a configuration error when the bytes are
    /// UTF-8), never a panic.
    #[test]
    fn any_bytes_as_config_file_load_or_fail_cleanly(
        bytes in prop_oneof![
            toml_like().prop_map(String::into_bytes),
            any::<String>().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        std::fs::write(config::config_path(dir.path()), &bytes)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(e) = config::load(dir.path())
            && std::str::from_utf8(&bytes).is_ok()
        {
            prop_assert!(matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))), "not a configuration error: {e:#}");
        }
    }

    /// What `config set` writes, `config get` reads back (in its canonical form), and every key
    /// set earlier in the same file keeps its value.
    #[test]
    fn set_then_get_reads_back_the_same_values(changes in settings()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut expected: Vec<(&str, Option<String>)> = Vec::new();
        for (key, raw, want) in &changes {
            let cfg = config::set_value(dir.path(), key, Some(raw))
                .map_err(|e| TestCaseError::fail(format!("set {key} = {raw:?}: {e:#}")))?;
            expected.retain(|(k, _)| k != key);
            expected.push((key, want.clone()));
            for (k, w) in &expected {
                prop_assert_eq!(&config::get_value(&cfg, k).map_err(|e| TestCaseError::fail(e.to_string()))?, w, "{} after setting {} = {:?}", k, key, raw);
            }
        }
        // and from the file, as a new process would read it
        let cfg = config::load(dir.path()).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        for (k, w) in &expected {
            prop_assert_eq!(&config::get_value(&cfg, k).map_err(|e| TestCaseError::fail(e.to_string()))?, w, "{} from the file", k);
        }
        // unsetting puts the default back
        let (k, _) = expected[0];
        let cfg = config::set_value(dir.path(), k, None).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let default = config::get_value(&config::Config::default(), k).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(config::get_value(&cfg, k).map_err(|e| TestCaseError::fail(e.to_string()))?, default);
    }
}

// ---------------------------------------------------------------------------------------------
// Cloud JSON conversion
// ---------------------------------------------------------------------------------------------

/// Field names the converters look at, so that generated objects hit them often.
const FIELDS: &[&str] = &[
    "id",
    "mail",
    "userPrincipalName",
    "accountEnabled",
    "userType",
    "@removed",
    "reason",
    "primaryEmail",
    "emails",
    "suspended",
    "archived",
    "profile",
    "email",
    "status",
    "username",
    "role_id",
    "@odata.type",
    "type",
    "name",
    "displayName",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        weird_string().prop_map(Value::String),
        // realistic values
        prop::sample::select(vec![
            "ACTIVE",
            "SUSPENDED",
            "DEPROVISIONED",
            "USER",
            "GROUP",
            "CUSTOMER",
            "user",
            "changed",
            "deleted",
            "Guest",
            "#microsoft.graph.user",
            "#microsoft.graph.group",
            " Ann.Lee@Example.COM ",
            "x@tenant.onmicrosoft.com",
            "bob#EXT#@x.com",
            "İstanbul@ß.de",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        (0i64..5).prop_map(Value::from),
    ]
}

/// Any JSON value, with objects keyed mostly by the converters' field names.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        4 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
                        1 => weird_string(),
                    ],
                    inner,
                ),
                0..8,
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object shaped like a vendor's user: each field the converters read is there most of the
/// time, with a value of the right type or not (nested `profile` and `@removed` objects too).
fn user_object() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        3 => json_leaf(),
        1 => json_value(),
        2 => weird_string().prop_map(Value::String),
    ];
    prop::collection::vec(prop::option::weighted(0.7, field), FIELDS.len()).prop_map(|vals| {
        let mut o = serde_json::Map::new();
        for (k, v) in FIELDS.iter().zip(vals) {
            if let Some(v) = v {
                o.insert(k.to_string(), v);
            }
        }
        // the nested fields, from the same values
        let email = o.get("email").cloned().unwrap_or(Value::Null);
        o.insert("profile".into(), serde_json::json!({ "email": email }));
        let reason = o.get("reason").cloned().unwrap_or(Value::Null);
        o.insert("@removed".into(), serde_json::json!({ "reason": reason }));
        Value::Object(o)
    })
}

/// Any JSON value, or a user-shaped object.
fn vendor_json() -> impl Strategy<Value = Value> {
    prop_oneof![json_value(), user_object()]
}

/// What a converted user must look like, whatever the JSON: the id it names is both its
/// reference and externalId, and it is either normalized (trimmed, lower-cased, valid email,
/// idempotent) or skipped with a reason.
fn check_user(u: &DirUser, id: Option<String>) -> Result<(), TestCaseError> {
    prop_assert_eq!(Some(u.reference_id.clone()), id);
    prop_assert_eq!(&*u.external_id, u.reference_id.as_str());
    let mut skipped = Vec::new();
    match normalize_users(vec![u.clone()], &mut skipped) {
        Ok(out) => {
            prop_assert_eq!(out.len() + skipped.len(), 1);
            if let Some(n) = out.first() {
                match &n.email {
                    Some(e) => {
                        let raw = u.email.as_deref().unwrap_or_default();
                        prop_assert_eq!(e, &norm(raw));
                        prop_assert!(is_valid_email(e), "{e:?}");
                        // normalizing again changes nothing
                        let mut s2 = Vec::new();
                        let again = normalize_users(vec![n.clone()], &mut s2)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(again, vec![n.clone()]);
                        // a set filter on the normalized email judges the raw one the same way
                        let f = Filter::parse(Some(&format!("include:{e}")));
                        if !e.contains([',', '|', ':']) {
                            prop_assert!(f.passes(Some(raw)), "{raw:?} vs include:{e}");
                        }
                    }
                    None => prop_assert!(n.deleted, "only a deleted user may lack an email"),
                }
            }
            for s in &skipped {
                prop_assert!(!s.reason.trim().is_empty());
            }
        }
        Err(e) => return Err(TestCaseError::fail(format!("one user cannot collide: {e}"))),
    }
    Ok(())
}

fn str_id(v: &Value) -> Option<String> {
    v["id"].as_str().map(str::to_string)
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn entra_objects_convert_or_are_skipped(v in vendor_json()) {
        if let Some(u) = entra::user_of(&v) {
            check_user(&u, str_id(&v))?;
            prop_assert_eq!(u.disabled, v["accountEnabled"] == Value::Bool(false));
            // the email is the mail or the UPN, trimmed
            if let Some(e) = &u.email {
                let cands = [&v["mail"], &v["userPrincipalName"]];
                prop_assert!(cands.iter().any(|c| c.as_str().map(str::trim) == Some(e.as_str())), "{e:?} from {v}");
            }
        } else {
            prop_assert!(str_id(&v).is_none());
        }
        let mut g = DirGroup::new("g", None);
        entra::add_member(&mut g, &v);
        prop_assert!(g.user_members.len() + g.group_members.len() <= 1);
    }

    #[test]
    fn google_objects_convert_or_are_skipped(v in vendor_json(), deleted in any::<bool>()) {
        match google::user_of(&v, deleted) {
            Some(u) => {
                check_user(&u, str_id(&v))?;
                prop_assert_eq!(u.deleted, deleted);
                prop_assert_eq!(u.email.as_deref(), v["primaryEmail"].as_str());
            }
            None => prop_assert!(str_id(&v).is_none() || (!deleted && v.get("emails").is_none())),
        }
        let users = vec![DirUser {
            reference_id: "a".into(), external_id: "a".into(), email: None, disabled: false, deleted: false,
            unreadable: None,
            immutable_id: None,
        }];
        let mut g = DirGroup::new("g", None);
        google::add_member(&mut g, &v, &users);
        prop_assert!(g.user_members.len() + g.group_members.len() <= 1);
    }

    #[test]
    fn okta_objects_convert_or_are_skipped(v in vendor_json()) {
        match okta::user_of(&v) {
            Some(u) => {
                check_user(&u, str_id(&v))?;
                prop_assert_eq!(u.email.as_deref(), v["profile"]["email"].as_str());
                prop_assert!(!(u.disabled && u.deleted));
            }
            None => prop_assert!(str_id(&v).is_none()),
        }
    }

    #[test]
    fn onelogin_objects_convert_or_are_skipped(
        v in vendor_json(),
        suffix in proptest::option::of("[@a-z.]{0,8}"),
        roles in prop::collection::vec(json_value(), 0..4),
    ) {
        match onelogin::user_of(&v, suffix.as_deref()) {
            Some(u) => {
                // ids are strings, numbers included (Vaultwarden rejects numbers)
                let id = match &v["id"] {
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                };
                check_user(&u, id)?;
                prop_assert!(!u.deleted);
            }
            None => prop_assert!(!matches!(&v["id"], Value::Number(_)) && v["id"].as_str().is_none_or(str::is_empty)),
        }
        let members = onelogin::role_members("1", &roles);
        prop_assert!(members.len() <= roles.len());
    }

    /// One email in any case and padding is one normalized email: two users whose emails differ
    /// only so are a duplicate, never two members.
    #[test]
    fn emails_differing_in_case_or_padding_collide(
        local in "[a-zA-Z0-9._]{1,8}",
        domain in "[a-zA-Z]{1,6}\\.[a-zA-Z]{2,3}",
        pad in "[ \t]{0,2}",
    ) {
        prop_assume!(!local.starts_with('.') && !local.ends_with('.'));
        let a = format!("{local}@{domain}");
        let b = format!("{pad}{}{pad}", a.to_uppercase());
        let u = |id: &str, e: &str| DirUser {
            reference_id: id.into(), external_id: id.into(), email: Some(e.into()), disabled: false, deleted: false,
            unreadable: None,
            immutable_id: None,
        };
        let mut skipped = Vec::new();
        let r = normalize_users(vec![u("1", &a), u("2", &b)], &mut skipped);
        prop_assert!(r.is_err(), "{a:?} and {b:?} were both kept: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Import body encoder and batching
// ---------------------------------------------------------------------------------------------

fn member_change() -> impl Strategy<Value = MemberChange> {
    (weird_string(), weird_string(), 0u8..5).prop_map(|(ext, email, a)| MemberChange {
        external_id: ext,
        email,
        action: match a {
            0 => MemberAction::Invite,
            1 => MemberAction::Resend,
            2 => MemberAction::Remove(RemovalReason::Deleted),
            3 => MemberAction::Remove(RemovalReason::Disabled),
            _ => MemberAction::Remove(RemovalReason::Missing),
        },
        member_id: None,
        previous_external_id: None,
    })
}

fn group_change() -> impl Strategy<Value = GroupChange> {
    (
        weird_string(),
        weird_string(),
        prop::collection::vec(weird_string(), 0..8),
    )
        .prop_map(|(ext, name, members)| GroupChange {
            external_id: ext,
            name,
            members: members.into_iter().map(Id::from).collect(),
            fingerprint: String::new(),
            action: GroupAction::Update,
            previous_member_count: None,
            previous_name: None,
            removed_members: 0,
            repairs_drift: false,
        })
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(member_change(), 0..12),
        prop::collection::vec(group_change(), 0..8),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(members, groups, overwrite)| Plan {
            members,
            groups,
            overwrite_existing: overwrite,
            ..Plan::default()
        })
}

/// (email, externalId, deleted) of a body's members, and (name, externalId, members) of its
/// groups, read from the JSON alone.
type Decoded = (
    Vec<(String, String, bool)>,
    Vec<(String, String, Vec<String>)>,
);

fn decode(body: &[u8]) -> Result<(Decoded, Value), TestCaseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let s = |x: &Value| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| TestCaseError::fail(format!("not a string: {x}")))
    };
    let mut members = Vec::new();
    for m in v["members"]
        .as_array()
        .ok_or_else(|| TestCaseError::fail("no members"))?
    {
        let deleted = m["deleted"]
            .as_bool()
            .ok_or_else(|| TestCaseError::fail("deleted"))?;
        members.push((s(&m["email"])?, s(&m["externalId"])?, deleted));
    }
    let mut groups = Vec::new();
    for g in v["groups"]
        .as_array()
        .ok_or_else(|| TestCaseError::fail("no groups"))?
    {
        let ids = g["memberExternalIds"]
            .as_array()
            .ok_or_else(|| TestCaseError::fail("ids"))?;
        let ids = ids.iter().map(s).collect::<Result<Vec<_>, _>>()?;
        groups.push((s(&g["name"])?, s(&g["externalId"])?, ids));
    }
    Ok(((members, groups), v))
}

/// What a whole push sent: members, and groups each as one string.
type Union = (BTreeSet<(String, String, bool)>, BTreeSet<String>);

proptest! {
    #![proptest_config(cases())]

    /// Every batch's body is JSON that reads back to the plan's slice; together the batches send
    /// every member and group exactly once, in order; no request holds more than `batch_size`
    /// members or groups, or more member references than the budget unless one group alone has
    /// more; members and groups go in separate requests once split; `largeImport` is set exactly
    /// when the plan holds more than one request's worth; `overwriteExisting` only ever in a single
    /// request.
    #[test]
    fn import_bodies_round_trip_and_batches_cover_the_plan(
        p in plan(),
        batch_size in 1usize..8,
        ref_budget in 1usize..16,
        invite in any::<bool>(),
    ) {
        let batches = match build_batches(&p, batch_size, ref_budget) {
            Ok(b) => b,
            Err(e) => {
                prop_assert!(p.overwrite_existing && p.members.len() + p.groups.len() > batch_size, "{e}");
                prop_assert!(e.contains("overwrite_existing"));
                return Ok(());
            }
        };
        if p.is_empty() {
            prop_assert!(batches.is_empty());
        }
        let total = p.members.len() + p.groups.len();
        let mut members = Vec::new();
        let mut groups = Vec::new();
        for b in &batches {
            let body = ImportRequest::from_batch(&p, b, invite).to_json()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ((m, g), v) = decode(&body)?;
            prop_assert_eq!(v["overwriteExisting"].as_bool(), Some(b.overwrite_existing));
            prop_assert_eq!(v["largeImport"].as_bool(), Some(b.large_import));
            prop_assert_eq!(v["inviteUsersAfterProvisioning"].as_bool(), Some(invite));
            prop_assert_eq!(b.large_import, total > batch_size);
            if b.overwrite_existing {
                prop_assert_eq!(batches.len(), 1);
            }
            if batches.len() > 1 {
                prop_assert!(m.is_empty() || g.is_empty(), "members and groups in one split request");
                prop_assert!(m.len() <= batch_size && g.len() <= batch_size);
                let refs: usize = g.iter().map(|g| g.2.len()).sum();
                prop_assert!(refs <= ref_budget || g.len() == 1, "{refs} references in {} groups", g.len());
            }
            prop_assert!(!m.is_empty() || !g.is_empty() || p.overwrite_existing, "an empty request");
            members.extend(m);
            groups.extend(g);
        }
        let want_m: Vec<(String, String, bool)> = p.members.iter()
            .map(|m| (m.email.clone(), m.external_id.clone(), m.is_removal())).collect();
        let want_g: Vec<(String, String, Vec<String>)> = p.groups.iter()
            .map(|g| (g.name.clone(), g.external_id.clone(), g.members.iter().map(|m| m.to_string()).collect())).collect();
        prop_assert_eq!(members, want_m);
        prop_assert_eq!(groups, want_g);
    }

    /// The batch size never changes what is sent: the union over the requests is the same for
    /// any two sizes.
    #[test]
    fn batch_size_never_changes_the_union(p in plan(), a in 1usize..6, b in 6usize..40, budget in 1usize..20) {
        prop_assume!(!p.overwrite_existing);
        let sent = |size: usize, budget: usize| -> Result<Union, TestCaseError> {
            let mut m = BTreeSet::new();
            let mut g = BTreeSet::new();
            for batch in build_batches(&p, size, budget).map_err(TestCaseError::fail)? {
                let body = ImportRequest::from_batch(&p, &batch, false).to_json()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let ((bm, bg), _) = decode(&body)?;
                m.extend(bm);
                g.extend(bg.into_iter().map(|g| format!("{}\u{0}{}\u{0}{}", g.0, g.1, g.2.join("\u{0}"))));
            }
            Ok((m, g))
        };
        prop_assert_eq!(sent(a, budget)?, sent(b, 1_000_000)?);
    }
}
