//! End-to-end: the real binary against the fake Okta and Microsoft Graph APIs and the fake
//! Bitwarden server — first and changed syncs, paging over several pages, a 429 then success,
//! wrong secrets, and the filters.

use crate::support;

use std::collections::BTreeSet;

use support::Env;
use support::fake_bitwarden::{FakeBitwarden, member_changes};
use support::fake_cloud::{
    CloudGroup, CloudUser, Directory, FakeCloud, GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT, OKTA_TOKEN,
};

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The emails of a `test --json` report's user lists.
fn emails(j: &serde_json::Value, lists: &[&str]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| j[*l].as_array().unwrap().iter())
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect()
}

/// The group names of a `test --json` report.
fn group_names(j: &serde_json::Value) -> Vec<String> {
    j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

fn user(id: &str, status: &'static str) -> CloudUser {
    CloudUser {
        id: id.into(),
        email: format!("{id}@example.com"),
        status,
        guest: false,
        department: String::new(),
    }
}

fn group(id: &str, name: &str, users: &[&str], groups: &[&str]) -> CloudGroup {
    CloudGroup {
        id: id.into(),
        name: name.into(),
        users: users.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        others: Vec::new(),
    }
}

pub(crate) fn directory(
    active: &'static str,
    suspended: &'static str,
    gone: &'static str,
) -> Directory {
    Directory {
        users: vec![
            user("alice", active),
            user("bob", suspended),
            user("carol", gone),
            user("dave", active),
            user("erin", active),
        ],
        groups: vec![
            group("g1", "Engineering", &["alice", "bob"], &[]),
            group("g2", "Sales", &["dave", "erin"], &["g1"]),
        ],
        page_size: 2,
        ..Directory::default()
    }
}

pub(crate) fn okta_env(cloud: &FakeCloud, server: &FakeBitwarden) -> Env {
    let env = Env::new();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "okta");
    env.set("okta.org_url", &cloud.url);
    let r = env.run_stdin(&["config", "set", "okta.token"], OKTA_TOKEN);
    assert_eq!(r.code, 0, "{}", r.all());
    env
}

pub(crate) fn entra_env(cloud: &FakeCloud, server: &FakeBitwarden) -> Env {
    let env = Env::new();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "entra");
    env.set("entra.tenant", GRAPH_TENANT);
    env.set("entra.application_id", GRAPH_APP);
    env.set("entra.login_url", &cloud.url);
    env.set("entra.graph_url", &cloud.url);
    let r = env.run_stdin(&["config", "set", "entra.key"], GRAPH_SECRET);
    assert_eq!(r.code, 0, "{}", r.all());
    env
}

#[test]
fn okta_first_and_changed_sync_over_several_pages() {
    let cloud = FakeCloud::start(directory("ACTIVE", "SUSPENDED", "DEPROVISIONED"));
    let server = FakeBitwarden::start();
    let env = okta_env(&cloud, &server);

    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["disabledUsers"].as_array().unwrap().len(), 1);
    assert_eq!(j["deletedUsers"].as_array().unwrap().len(), 1);
    env.ok(&["sync"]);
    assert_eq!(
        server.org().emails(),
        set(&[
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "erin@example.com"
        ])
    );
    assert_eq!(
        server.org().group_emails("Engineering"),
        set(&["alice@example.com", "bob@example.com"])
    );
    // 5 users at 2 a page: the listing followed `Link: rel="next"`
    assert!(
        cloud
            .dir()
            .requests
            .iter()
            .any(|r| r.starts_with("/api/v1/users") && r.contains("\"after\"")),
        "{:?}",
        cloud.dir().requests
    );

    // frank joins Sales, erin is deprovisioned
    {
        let mut d = cloud.dir();
        d.users.push(user("frank", "ACTIVE"));
        d.users.iter_mut().find(|u| u.id == "erin").unwrap().status = "DEPROVISIONED";
        let sales = d.groups.iter_mut().find(|g| g.id == "g2").unwrap();
        sales.users = vec!["dave".into(), "frank".into()];
    }
    let before = server.import_count();
    env.ok(&["sync"]);
    assert_eq!(server.import_count(), before + 1);
    let members = member_changes(&server.last_body());
    assert!(
        members.contains(&("frank@example.com".into(), false)),
        "{members:?}"
    );
    assert!(
        members.contains(&("erin@example.com".into(), true)),
        "{members:?}"
    );
    assert_eq!(
        server.org().emails(),
        set(&[
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "frank@example.com"
        ])
    );
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&["dave@example.com", "frank@example.com"])
    );
}

#[test]
fn okta_rate_limit_then_success_and_a_wrong_token() {
    let mut d = directory("ACTIVE", "SUSPENDED", "DEPROVISIONED");
    d.throttle = 1;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = okta_env(&cloud, &server);
    let r = env.ok(&["sync"]);
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
    assert_eq!(server.org().members.len(), 4);

    let r = env.run_stdin(&["config", "set", "okta.token"], "not-the-token");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("Okta: GET ")
            && r.stderr.contains("/api/v1/users")
            && r.stderr.contains("HTTP 401")
            && r.stderr.contains("Invalid token provided"),
        "{}",
        r.stderr
    );
}

/// Issue 15, finding 5: Okta's `filter` refuses `profile.*` other than login, email and names
/// (400 E0000031); a native query goes out as `search`, whose results already hold the
/// DEPROVISIONED users (read once, not twice).
#[test]
fn okta_native_queries_are_searches() {
    let mut d = directory("ACTIVE", "SUSPENDED", "DEPROVISIONED");
    for u in &mut d.users {
        u.department = if u.id == "erin" { "Sales" } else { "Eng" }.into();
    }
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = okta_env(&cloud, &server);
    env.set(
        "sync.user_filter",
        "exclude:dave@example.com | profile.department eq \"Eng\"",
    );
    let j = env.json(&["test"]);
    // erin is in Sales, dave excluded; carol (DEPROVISIONED, Eng) found by the search, once
    assert_eq!(
        emails(&j, &["enabledUsers", "disabledUsers"]),
        set(&["alice@example.com", "bob@example.com"])
    );
    assert_eq!(
        emails(&j, &["deletedUsers"]),
        set(&["carol@example.com"]),
        "{j}"
    );
    assert_eq!(j["deletedUsers"].as_array().unwrap().len(), 1, "{j}");
    let reqs = cloud.dir().requests.clone();
    let users: Vec<&String> = reqs
        .iter()
        .filter(|r| r.starts_with("/api/v1/users "))
        .collect();
    assert!(
        users.iter().all(
            |r| r.contains("\"search\", \"profile.department eq \\\"Eng\\\"\"")
                && !r.contains("\"filter\"")
        ),
        "one search, no filter: {users:?}"
    );
    assert_eq!(
        users.len(),
        2,
        "5 users at 2 a page, nothing read twice: {users:?}"
    );

    // with the group filter, only members of the kept group remain
    env.set("sync.group_filter", "include:Engineering");
    let j = env.json(&["test"]);
    assert_eq!(group_names(&j), vec!["Engineering"]);
    assert_eq!(
        emails(&j, &["enabledUsers", "disabledUsers"]),
        set(&["alice@example.com", "bob@example.com"])
    );

    // without a query: the list and the DEPROVISIONED users by filter (a field filter knows)
    env.ok(&["config", "unset", "sync.user_filter"]);
    env.ok(&["config", "unset", "sync.group_filter"]);
    cloud.dir().requests.clear();
    let j = env.json(&["test"]);
    assert_eq!(j["deletedUsers"].as_array().unwrap().len(), 1, "{j}");
    assert!(
        cloud
            .dir()
            .requests
            .iter()
            .any(|r| r.contains("\"filter\", \"status eq \\\"DEPROVISIONED\\\"\"")),
        "{:?}",
        cloud.dir().requests
    );
}

#[test]
fn entra_first_and_changed_sync_with_nesting_and_deleted_users() {
    let cloud = FakeCloud::start(directory("ACTIVE", "DISABLED", "DELETED"));
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["disabledUsers"].as_array().unwrap().len(), 1);
    assert_eq!(
        j["deletedUsers"].as_array().unwrap().len(),
        1,
        "carol from the recycle bin (deletedItems)"
    );
    env.ok(&["sync"]);
    // Sales holds Engineering (nested): flattened
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&[
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "erin@example.com"
        ])
    );
    assert!(
        cloud
            .dir()
            .requests
            .iter()
            .any(|r| r.contains("$skiptoken"))
    );

    // erin is deleted (soft): removed
    cloud
        .dir()
        .users
        .iter_mut()
        .find(|u| u.id == "erin")
        .unwrap()
        .status = "DELETED";
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("erin@example.com"));
    assert_eq!(server.org().members.len(), 3);
}

#[test]
fn entra_throttling_wrong_secret_and_group_filters() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.throttle = 1;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    // includeGroup: the transitive members of Sales, minus Engineering's and one email
    env.set(
        "sync.user_filter",
        "includeGroup:g2|excludeGroup:g1|exclude:erin@example.com",
    );
    let j = env.json(&["test"]);
    let emails = emails(&j, &["enabledUsers"]);
    assert_eq!(emails, set(&["dave@example.com"]));
    assert!(
        cloud
            .dir()
            .requests
            .iter()
            .any(|r| r.contains("/groups/g2/transitiveMembers")),
        "{:?}",
        cloud.dir().requests
    );
    // group filter by name
    env.ok(&["config", "unset", "sync.user_filter"]);
    env.set("sync.group_filter", "exclude:Sales");
    let j = env.json(&["test"]);
    assert_eq!(group_names(&j), vec!["Engineering"]);

    let r = env.run_stdin(&["config", "set", "entra.key"], "wrong-secret");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("Microsoft Entra ID: POST ")
            && r.stderr.contains("oauth2/v2.0/token")
            && r.stderr.contains("HTTP 401")
            && r.stderr.contains("invalid_client"),
        "{}",
        r.stderr
    );
    assert_eq!(server.import_count(), 0);
}

pub(crate) fn onelogin_env(cloud: &FakeCloud, server: &FakeBitwarden) -> Env {
    let env = Env::new();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "onelogin");
    env.set("onelogin.client_id", support::fake_cloud::ONELOGIN_ID);
    env.set("onelogin.api_url", &cloud.url);
    let r = env.run_stdin(
        &["config", "set", "onelogin.client_secret"],
        support::fake_cloud::ONELOGIN_SECRET,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    env
}

#[test]
fn onelogin_users_and_roles_with_cursor_paging() {
    let cloud = FakeCloud::start(directory("ACTIVE", "DISABLED", "DELETED"));
    let server = FakeBitwarden::start();
    let env = onelogin_env(&cloud, &server);
    let j = env.json(&["test"]);
    // numeric ids arrive as strings
    let ids: Vec<&str> = j["enabledUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["externalId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"1000"), "{ids:?}");
    assert_eq!(j["disabledUsers"].as_array().unwrap().len(), 1);
    env.ok(&["sync"]);
    assert_eq!(
        server.org().group_emails("Engineering"),
        set(&["alice@example.com", "bob@example.com"])
    );
    let body = server.last_body();
    assert!(
        body["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["externalId"].is_string())
    );
    assert!(cloud.dir().requests.iter().any(|r| r.contains("cursor")));

    // a changed sync: dave leaves Sales
    cloud
        .dir()
        .groups
        .iter_mut()
        .find(|g| g.id == "g2")
        .unwrap()
        .users = vec!["erin".into()];
    env.ok(&["sync"]);
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&["erin@example.com"])
    );

    // role filter: only Engineering, and only its members remain
    env.set("sync.group_filter", "include:engineering");
    let j = env.json(&["test"]);
    assert_eq!(j["groups"].as_array().unwrap().len(), 1);
    let emails = emails(&j, &["enabledUsers", "disabledUsers"]);
    assert_eq!(emails, set(&["alice@example.com", "bob@example.com"]));
    env.ok(&["config", "unset", "sync.group_filter"]);

    // 429 then success, and a wrong secret
    cloud.dir().throttle = 1;
    env.ok(&["test"]);
    let r = env.run_stdin(&["config", "set", "onelogin.client_secret"], "wrong");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("OneLogin: POST ")
            && r.stderr.contains("HTTP 401")
            && r.stderr.contains("Authentication Failure"),
        "{}",
        r.stderr
    );
}

/// An RSA key pair for the service account (made with openssl; slow in debug Rust).
pub(crate) fn google_key() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    (
        std::fs::read_to_string(&key).unwrap(),
        String::from_utf8(public.stdout).unwrap(),
    )
}

#[test]
fn google_service_account_sync_with_nesting_and_deleted_users() {
    let (private, public) = google_key();
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.google_public_key = public;
    d.throttle = 1; // the first call answers 429
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "google");
    env.set("google.domain", "example.com");
    env.set("google.admin_user", support::fake_cloud::GOOGLE_ADMIN);
    env.set("google.api_url", &cloud.url);
    env.set("google.token_url", &format!("{}/google/token", cloud.url));
    let key_json = serde_json::json!({
        "type": "service_account",
        "client_email": support::fake_cloud::GOOGLE_SA,
        "private_key": private,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    // the JSON key through a file reference
    let key_file = env.path().join("key.json");
    std::fs::write(&key_file, &key_json).unwrap();
    env.set("google.key", &format!("file:{}", key_file.display()));

    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["disabledUsers"].as_array().unwrap().len(), 1);
    assert_eq!(j["deletedUsers"].as_array().unwrap().len(), 1);
    env.ok(&["sync"]);
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&[
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "erin@example.com"
        ]),
        "Engineering nested in Sales"
    );
    let reqs = cloud.dir().requests.clone();
    assert!(reqs.iter().any(|r| r.contains("pageToken")), "{reqs:?}");
    assert!(
        reqs.iter()
            .any(|r| r.contains("\"domain\", \"example.com\"")),
        "{reqs:?}"
    );

    // deleted: erin; the sync removes her
    cloud
        .dir()
        .users
        .iter_mut()
        .find(|u| u.id == "erin")
        .unwrap()
        .status = "DELETED";
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("erin@example.com"));

    // another key: the signature check fails, the error names Google and the request
    let (other, _) = google_key();
    let bad =
        serde_json::json!({"client_email": support::fake_cloud::GOOGLE_SA, "private_key": other})
            .to_string();
    std::fs::write(&key_file, bad).unwrap();
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("Google: POST ")
            && r.stderr.contains("HTTP 400")
            && r.stderr.contains("invalid_grant"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("PRIVATE KEY"),
        "no key material in errors"
    );
}

/// A proxy that records the request lines it receives and answers 502.
fn refusing_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            seen2.lock().unwrap().push(first.trim().to_string());
            let mut c = conn;
            let _ = c.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, seen)
}

#[test]
fn the_directory_apis_go_through_the_configured_proxy() {
    let cloud = FakeCloud::start(directory("ACTIVE", "SUSPENDED", "DEPROVISIONED"));
    let server = FakeBitwarden::start();
    let mut env = okta_env(&cloud, &server);
    let (proxy, seen) = refusing_proxy();
    env.set_var("HTTP_PROXY", &proxy);
    env.set_var("http_proxy", &proxy);
    env.set_var("NO_PROXY", "");
    env.set_var("no_proxy", "");
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("HTTP 502"), "{}", r.stderr);
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET ") && l.contains("/api/v1/users")),
        "the proxy saw the Okta request: {lines:?}"
    );
    // NO_PROXY exempts the host
    env.set_var("NO_PROXY", "127.0.0.1");
    env.set_var("no_proxy", "127.0.0.1");
    env.ok(&["test"]);
}

#[test]
fn okta_slows_down_before_the_rate_limit() {
    let mut d = directory("ACTIVE", "SUSPENDED", "DEPROVISIONED");
    // 5 calls a window; the test makes 6 (users 2 pages, deprovisioned 1, groups 1, members 2):
    // with the default 10% reserve the client waits for the reset when none remains
    d.rate_limit = 5;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = okta_env(&cloud, &server);
    let started = std::time::Instant::now();
    let r = env.ok(&["-v", "test"]);
    assert!(r.stderr.contains("rate-limit budget low"), "{}", r.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(
        cloud.dir().requests.len() >= 6,
        "the listing went on after the wait: {:?}",
        cloud.dir().requests
    );
}

/// The externalIds of a `test --json` report's deleted users (a replayed delta link names a
/// deleted user by id only).
fn deleted_ids(j: &serde_json::Value) -> BTreeSet<String> {
    j["deletedUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["externalId"].as_str().unwrap().to_string())
        .collect()
}

fn requests(cloud: &FakeCloud) -> Vec<String> {
    cloud.dir().requests.clone()
}

/// Issue 15, finding 1: a fresh `/users/delta` lists existing users only; deleted users come
/// from the recycle bin (`deletedItems`) on the first run and from the saved delta link after
/// a successful sync. `test` never moves the link forward; an expired link falls back to the
/// recycle bin.
#[test]
fn entra_deleted_users_come_from_the_saved_delta_link() {
    let cloud = FakeCloud::start(directory("ACTIVE", "DISABLED", "DELETED"));
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    let j = env.json(&["test"]);
    assert_eq!(deleted_ids(&j), set(&["carol"]), "{j}");
    let reqs = requests(&cloud);
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/v1.0/directory/deletedItems/microsoft.graph.user ")),
        "{reqs:?}"
    );
    env.ok(&["sync"]);

    // erin is deleted: the saved link reports her (twice with `test`: it stays where it was)
    cloud
        .dir()
        .users
        .iter_mut()
        .find(|u| u.id == "erin")
        .unwrap()
        .status = "DELETED";
    cloud.dir().requests.clear();
    for _ in 0..2 {
        let j = env.json(&["test"]);
        assert!(deleted_ids(&j).contains("erin"), "{j}");
    }
    let reqs = requests(&cloud);
    assert!(
        reqs.iter().any(|r| r.starts_with("/v1.0/users/delta ")
            && r.contains("$deltatoken")
            && !r.contains("latest")),
        "the saved link was replayed: {reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.contains("deletedItems")),
        "no fallback while the link works: {reqs:?}"
    );
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("erin@example.com"));
    // the next link starts after erin's deletion
    let j = env.json(&["test"]);
    assert!(deleted_ids(&j).is_empty(), "{j}");

    // with an email set filter, a deletion the link names by id only still counts
    env.set(
        "sync.user_filter",
        "include:alice@example.com,bob@example.com",
    );
    env.ok(&["sync"]);
    cloud
        .dir()
        .users
        .iter_mut()
        .find(|u| u.id == "bob")
        .unwrap()
        .status = "DELETED";
    let j = env.json(&["test"]);
    assert_eq!(deleted_ids(&j), set(&["bob"]), "{j}");
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("bob@example.com"));
    env.ok(&["config", "unset", "sync.user_filter"]);
    env.ok(&["sync"]);

    // an expired link (400 syncStateNotFound): the recycle bin instead
    {
        let mut d = cloud.dir();
        d.expire_delta_links = true;
        d.users.iter_mut().find(|u| u.id == "dave").unwrap().status = "DELETED";
    }
    let j = env.json(&["test"]);
    assert!(deleted_ids(&j).contains("dave"), "{j}");
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("dave@example.com"));
}

/// Issue 15, finding 2: transitive members include nested groups, contacts, devices and
/// service principals; only users are kept.
#[test]
fn entra_include_group_keeps_only_users() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    let sales = d.groups.iter_mut().find(|g| g.id == "g2").unwrap();
    sales.others = vec![
        (
            "#microsoft.graph.orgContact".into(),
            "contact1".into(),
            "partner@contoso-partner.com".into(),
        ),
        (
            "#microsoft.graph.servicePrincipal".into(),
            "sp1".into(),
            "robot@example.com".into(),
        ),
        (
            "#microsoft.graph.device".into(),
            "device1".into(),
            String::new(),
        ),
    ];
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    env.set("sync.user_filter", "includeGroup:g2");
    env.set("sync.groups", "false");
    let j = env.json(&["test"]);
    assert_eq!(
        emails(&j, &["enabledUsers", "disabledUsers"]),
        set(&[
            "alice@example.com",
            "bob@example.com",
            "dave@example.com",
            "erin@example.com"
        ]),
        "no contact, service principal or nested group (g1@example.com): {j}"
    );
}

/// Issue 15, finding 8: a guest with `mail` set is skipped unless `entra.include_guests`.
#[test]
fn entra_guests_are_skipped_unless_included() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    let mut gina = user("gina", "ACTIVE");
    gina.email = "gina@partner.example".into();
    gina.guest = true;
    d.users.push(gina);
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    let j = env.json(&["test"]);
    assert!(
        !emails(&j, &["enabledUsers"]).contains("gina@partner.example"),
        "{j}"
    );
    assert!(
        requests(&cloud)
            .iter()
            .any(|r| r.starts_with("/v1.0/users ") && r.contains("userType")),
        "userType is selected"
    );
    env.set("entra.include_guests", "true");
    let j = env.json(&["test"]);
    assert!(
        emails(&j, &["enabledUsers"]).contains("gina@partner.example"),
        "{j}"
    );
}

/// Issue 15, finding 9: upstream's administrative-unit group filters.
#[test]
fn entra_administrative_unit_group_filters() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.units = vec![support::fake_cloud::CloudUnit {
        id: "au1".into(),
        groups: vec!["g1".into()],
        users: vec!["dave".into()],
    }];
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    env.set("sync.group_filter", "includeAdministrativeUnit:au1");
    env.ok(&["config", "validate"]);
    let j = env.json(&["test"]);
    assert_eq!(group_names(&j), vec!["Engineering"]);
    // group-scoped pruning: only Engineering's members
    assert_eq!(
        emails(&j, &["enabledUsers", "disabledUsers"]),
        set(&["alice@example.com", "bob@example.com"])
    );
    assert!(
        requests(&cloud)
            .iter()
            .any(|r| r.starts_with("/v1.0/directory/administrativeUnits/au1/members")),
        "{:?}",
        requests(&cloud)
    );
    env.set("sync.group_filter", "excludeAdministrativeUnit:au1");
    let j = env.json(&["test"]);
    assert_eq!(group_names(&j), vec!["Sales"]);
    // not for users
    env.ok(&["config", "unset", "sync.group_filter"]);
    env.set("sync.user_filter", "includeAdministrativeUnit:au1");
    let r = env.expect(&["config", "validate"], 2);
    assert!(r.all().contains("sync.user_filter"), "{}", r.all());
}

/// Issue 15, finding 3 (Graph): a token that expires during the run is renewed before it
/// expires (from `expires_in`), and once when the API refuses it with 401
/// `InvalidAuthenticationToken` although it should still be valid.
#[test]
fn entra_tokens_are_renewed() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.token_lifetime = 1;
    d.delay_ms = 150;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 3, "{j}");
    let tokens = requests(&cloud)
        .iter()
        .filter(|r| r.contains("oauth2/v2.0/token"))
        .count();
    assert!(tokens >= 2, "renewed: {:?}", requests(&cloud));

    // the token dies early (revoked): one 401, a new token, the same request again
    {
        let mut d = cloud.dir();
        d.announced_lifetime = Some(3599);
        d.requests.clear();
    }
    let r = env.ok(&["-v", "test"]);
    assert!(
        r.stderr.contains("InvalidAuthenticationToken") && r.stderr.contains("signing in again"),
        "{}",
        r.stderr
    );
}

/// Issue 15, finding 7: a `Retry-After` beyond 60 s is honoured up to
/// `entra.max_retry_after_seconds`; a longer one ends the run with a message naming the wait
/// and the key; each wait is logged with its length and reason.
#[test]
fn entra_retry_after_is_honoured_up_to_the_configured_maximum() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.throttle = 1;
    d.retry_after = 90;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    env.set("entra.max_retry_after_seconds", "5");
    let started = std::time::Instant::now();
    let r = env.expect(&["test"], 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "gave up instead of waiting"
    );
    assert!(
        r.stderr.contains("90 s") && r.stderr.contains("entra.max_retry_after_seconds"),
        "{}",
        r.stderr
    );
    {
        let mut d = cloud.dir();
        d.throttle = 1;
        d.retry_after = 2;
    }
    let started = std::time::Instant::now();
    let r = env.ok(&["test"]);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert!(
        r.stderr.contains("HTTP 429 with Retry-After: 2 s") && r.stderr.contains("waiting"),
        "{}",
        r.stderr
    );
}

/// Issue 15: `test --explain` lists every request a sync makes, without secrets.
#[test]
fn test_explain_lists_the_directory_requests() {
    let cloud = FakeCloud::start(directory("ACTIVE", "DISABLED", "DELETED"));
    let server = FakeBitwarden::start();
    let env = entra_env(&cloud, &server);
    let r = env.ok(&["test", "--explain"]);
    let out = r.stdout.clone();
    for expected in [
        format!("POST {}/{GRAPH_TENANT}/oauth2/v2.0/token", cloud.url),
        format!("GET {}/v1.0/users?$select=", cloud.url),
        format!(
            "GET {}/v1.0/directory/deletedItems/microsoft.graph.user?",
            cloud.url
        ),
        format!("GET {}/v1.0/groups?", cloud.url),
        format!("GET {}/v1.0/groups/g1/members?", cloud.url),
    ] {
        assert!(out.contains(&expected), "{expected} missing from:\n{out}");
    }
    assert!(!r.all().contains(GRAPH_SECRET) && !r.all().contains("graph-access-token"));
    let j = env.json(&["test", "--explain"]);
    assert_eq!(j["complete"], true);
    assert!(j["requests"].as_array().unwrap().len() >= 8, "{j}");

    // a refused request ends the list
    let r = env.run_stdin(&["config", "set", "entra.key"], "wrong-secret");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test", "--explain"], 1);
    assert!(
        r.stdout.contains("oauth2/v2.0/token") && r.stderr.contains("HTTP 401"),
        "{}",
        r.all()
    );
}

pub(crate) fn google_env(cloud: &FakeCloud, server: &FakeBitwarden, private: &str) -> Env {
    let env = Env::new();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "google");
    env.set("google.domain", "example.com");
    env.set("google.admin_user", support::fake_cloud::GOOGLE_ADMIN);
    env.set("google.api_url", &cloud.url);
    env.set("google.token_url", &format!("{}/google/token", cloud.url));
    let key_json = serde_json::json!({
        "type": "service_account",
        "client_email": support::fake_cloud::GOOGLE_SA,
        "private_key": private,
    })
    .to_string();
    let key_file = env.path().join("key.json");
    std::fs::write(&key_file, &key_json).unwrap();
    env.set("google.key", &format!("file:{}", key_file.display()));
    env
}

/// Issue 15, findings 3 and 4 (Google): quota errors (403 userRateLimitExceeded,
/// rateLimitExceeded, quotaExceeded) and 503 backendError are retried with backoff, not
/// reported as a missing permission; an expiring token is renewed.
#[test]
fn google_quota_errors_are_retried_and_tokens_renewed() {
    let (private, public) = google_key();
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    d.google_public_key = public;
    d.google_errors = vec![
        (403, "userRateLimitExceeded"),
        (503, "backendError"),
        (403, "quotaExceeded"),
    ];
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = google_env(&cloud, &server, &private);
    let r = env.ok(&["test"]);
    assert!(
        r.stderr.contains("userRateLimitExceeded") && r.stderr.contains("waiting"),
        "{}",
        r.stderr
    );
    assert!(cloud.dir().google_errors.is_empty());

    // quota errors on every attempt: the error names the reason, not a permission
    cloud.dir().google_errors = vec![(403, "rateLimitExceeded"); 10];
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("rateLimitExceeded") && r.stderr.contains("HTTP 403"),
        "{}",
        r.stderr
    );
    cloud.dir().google_errors.clear();

    {
        let mut d = cloud.dir();
        d.token_lifetime = 1;
        d.delay_ms = 150;
        d.requests.clear();
    }
    env.ok(&["test"]);
    let tokens = requests(&cloud)
        .iter()
        .filter(|r| r.starts_with("POST /google/token"))
        .count();
    assert!(tokens >= 2, "renewed: {:?}", requests(&cloud));
}

/// Issue 15, findings 3 and 6 (OneLogin): the `X-RateLimit-*` budget is honoured (the reset is
/// seconds from now), and a token the API stops accepting is renewed once.
#[test]
fn onelogin_rate_limit_budget_and_token_renewal() {
    let mut d = directory("ACTIVE", "DISABLED", "DELETED");
    // users 2 pages (4 users), roles 1 page: 3 calls; a window of 2 calls in 2 s
    d.onelogin_limit = 2;
    d.onelogin_window_secs = 2;
    let cloud = FakeCloud::start(d);
    let server = FakeBitwarden::start();
    let env = onelogin_env(&cloud, &server);
    let started = std::time::Instant::now();
    let r = env.ok(&["-v", "test"]);
    assert!(r.stderr.contains("rate-limit budget low"), "{}", r.stderr);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));

    {
        let mut d = cloud.dir();
        d.onelogin_limit = 0;
        d.onelogin_window = None;
        d.token_lifetime = 1;
        d.announced_lifetime = Some(36000);
        d.delay_ms = 600;
        d.requests.clear();
    }
    let r = env.ok(&["-v", "test"]);
    assert!(r.stderr.contains("signing in again"), "{}", r.stderr);
    let tokens = requests(&cloud)
        .iter()
        .filter(|r| r.starts_with("POST /auth/oauth2/v2/token"))
        .count();
    assert!(tokens >= 2, "{:?}", requests(&cloud));
}
