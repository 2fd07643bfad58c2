//! Issue 28 items 4, 5, 6 and 8 through the real widgets (egui_kittest): the window's own
//! words (a scripted run whose every text is collected and checked for CLI language), the
//! notifications and the still layout, the sync's one bar, sortable tables with "n of N", the
//! chart, the Import dialog, the service's tables and the groups a refused plan empties.

use crate::support;

use std::time::{Duration, Instant};

use directory_connector::gui::App;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{Slapd, user_dn};
use support::{CLIENT_SECRET, Env, client_id};

use crate::gui::{click, directory, has_label, logged_in, type_into, wait, window};

/// The notification's text, hint and details.
fn notice(h: &Harness<'static, App>) -> String {
    h.state().banner.as_ref().map_or(String::new(), |b| {
        format!(
            "{} | {} | {}",
            b.text,
            b.hint.as_deref().unwrap_or_default(),
            b.details.as_deref().unwrap_or_default()
        )
    })
}

/// Every text the window shows now: each node's label, value and description.
fn texts(h: &Harness<'static, App>) -> Vec<String> {
    let mut out = Vec::new();
    for node in h.root().children_recursive() {
        let n = node.accesskit_node();
        for t in [n.label(), n.value(), n.description()]
            .into_iter()
            .flatten()
        {
            let t = t.to_string();
            if !t.trim().is_empty() {
                out.push(t);
            }
        }
    }
    out
}

/// The CLI language in a text: a `--flag`, a backtick-quoted command, the program's name
/// before a command, or a config key (`ldap.port`) standing as a word.
fn cli_language(text: &str) -> Option<String> {
    if text.contains("--") {
        return Some("a --flag".into());
    }
    if text.contains('`') {
        return Some("a backtick-quoted command".into());
    }
    if text.contains("directory-connector ") {
        return Some("`directory-connector `".into());
    }
    for (key, _, _) in directory_connector::config::KEYS {
        let mut from = 0;
        while let Some(at) = text[from..].find(key) {
            let start = from + at;
            let end = start + key.len();
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
            let before = text[..start].chars().next_back().is_some_and(word);
            let after = text[end..].chars().next().is_some_and(word);
            if !before && !after {
                return Some(format!("the config key {key}"));
            }
            from = end;
        }
    }
    None
}

/// Collects the window's texts into `seen`, stepping a frame first.
fn collect(h: &mut Harness<'static, App>, seen: &mut Vec<(String, String)>, when: &str) {
    h.step();
    for t in texts(h) {
        seen.push((when.to_string(), t));
    }
}

fn upstream_data(server: &FakeBitwarden, slapd: &Slapd) -> tempfile::TempDir {
    let up = tempfile::tempdir().unwrap();
    let data = format!(
        r#"{{"stateVersion": 8, "organizationId": "{org}", "directoryType": 0,
  "environmentUrls": {{"base": "{url}"}},
  "directoryLdap": {{"hostname": "127.0.0.1", "port": {port}, "ssl": false,
    "rootPath": "ou=People,{base}", "username": "{reader}", "password": "{pw}", "ad": false}},
  "sync": {{"users": true, "groups": true, "interval": 5, "userPath": "ou=People",
    "groupPath": "ou=Groups", "userObjectClass": "inetOrgPerson",
    "groupObjectClass": "groupOfNames", "memberAttribute": "member"}},
  "apiKeyClientId": "{id}", "apiKeyClientSecret": "{secret}"}}"#,
        org = support::ORG_ID,
        url = server.url,
        port = slapd.port,
        base = support::slapd::BASE,
        reader = support::slapd::READER_DN,
        pw = support::slapd::READER_PW,
        id = client_id(),
        secret = CLIENT_SECRET,
    );
    std::fs::write(up.path().join("data.json"), &data).unwrap();
    up
}

/// The scripted run of issue 28: a wrong API key then the right one, bad settings, a refused
/// sync and its override dialog, a refused connection, and an import (preview, a refusal to
/// replace, the import). Every text the window shows on the way is collected; none speaks the
/// CLI's language.
#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scripted session, step by step, collecting what each screen shows"
)]
fn a_scripted_run_shows_no_cli_language() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "1");
    let mut seen: Vec<(String, String)> = Vec::new();

    // login: a wrong secret, then the right one
    let mut h = window(&env, None);
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));
    collect(&mut h, &mut seen, "login");
    type_into(&mut h, "Client ID", &client_id());
    type_into(&mut h, "Client secret", "wrong-secret");
    click(&mut h, "Log In");
    wait(&mut h, "the login error", |h| {
        h.state().banner.as_ref().is_some_and(|b| b.error)
    });
    let b = notice(&h);
    assert!(b.contains("refused the API key"), "{b}");
    assert!(
        b.contains("Client ID"),
        "the hint names the key's fields: {b}"
    );
    click(&mut h, "Details");
    collect(&mut h, &mut seen, "a wrong API key");
    type_into(&mut h, "Client secret", CLIENT_SECRET);
    click(&mut h, "Log In");
    wait(&mut h, "the dashboard", |h| has_label(h, "Test Now"));
    collect(&mut h, &mut seen, "the dashboard");

    // bad settings: type errors and a Root Path that is no DN
    click(&mut h, "Settings");
    type_into(&mut h, "Server Port", "abc");
    type_into(&mut h, "Root Path", "abc");
    click(&mut h, "Save");
    assert!(h.state().banner.as_ref().is_some_and(|b| b.error));
    collect(&mut h, &mut seen, "bad settings");
    click(&mut h, "Revert");

    // a first sync, then a refused one and its override dialog
    click(&mut h, "Dashboard");
    click(&mut h, "Sync Now");
    wait(&mut h, "the first sync", |h| {
        notice(h).contains("Sync complete") && h.state().dashboard.users.len() == 3
    });
    collect(&mut h, &mut seen, "a sync");
    slapd.delete(&user_dn("bob"));
    slapd.delete(&user_dn("carol"));
    click(&mut h, "Sync Now");
    wait(&mut h, "the refusal", |h| {
        h.state().dashboard.refused.is_some()
    });
    assert!(
        notice(&h).contains("refused by the guard"),
        "{}",
        notice(&h)
    );
    click(&mut h, "Details");
    collect(&mut h, &mut seen, "a refused sync");
    click(&mut h, "Sync anyway (this once)...");
    assert!(has_label(&h, "Override the guard?"));
    collect(&mut h, &mut seen, "the override dialog");
    click(&mut h, "Cancel");
    click(&mut h, "History");
    collect(&mut h, &mut seen, "the history");

    // a refused connection: nothing listens on the directory's port
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.set("ldap.port", &port.to_string());
    click(&mut h, "Test Now");
    wait(&mut h, "the connection error", |h| {
        h.state().banner.as_ref().is_some_and(|b| b.error) && h.state().worker.busy().is_none()
    });
    let b = h.state().banner.as_ref().unwrap();
    assert_eq!(
        b.text,
        "Test Now could not connect to the directory server: the connection was refused."
    );
    let hint = b.hint.clone().unwrap_or_default();
    assert!(
        hint.contains("Server Hostname and Server Port"),
        "the hint names the fields: {hint}"
    );
    let details = b.details.clone().unwrap_or_default();
    assert_eq!(
        details.matches("Connection refused").count(),
        1,
        "the cause is said once: {details}"
    );
    click(&mut h, "Details");
    collect(&mut h, &mut seen, "a refused connection");
    env.set("ldap.port", &slapd.port.to_string());

    // the import: a preview, Import refused without Replace, then with it
    let up = upstream_data(&server, &slapd);
    click(&mut h, "More");
    click(&mut h, "Import from Bitwarden Directory Connector…");
    type_into(
        &mut h,
        "Official connector's data",
        up.path().to_str().unwrap(),
    );
    click(&mut h, "Preview");
    assert!(
        has_label(&h, "Import needs"),
        "the preview says Replace is needed"
    );
    click(&mut h, "The configuration file (config.toml)");
    collect(&mut h, &mut seen, "an import's preview");
    click(&mut h, "Import");
    assert!(has_label(&h, "already set up"));
    collect(&mut h, &mut seen, "an import refused");
    click(&mut h, "Replace this connector's configuration");
    click(&mut h, "Import");
    wait(&mut h, "the import", |h| has_label(h, "Imported from"));
    collect(&mut h, &mut seen, "an import");
    assert_eq!(
        h.query_all_by_label("Test Now").count(),
        1,
        "the next step is a button: {:?}",
        texts(&h)
    );

    let bad: Vec<String> = seen
        .iter()
        .filter_map(|(when, t)| cli_language(t).map(|why| format!("{when}: {why}: {t:?}")))
        .collect();
    assert!(
        bad.is_empty(),
        "CLI language in the window:\n{}",
        bad.join("\n")
    );
    // the collection saw the screens (the check cannot pass on an empty window)
    for expected in [
        "Client secret",
        "Server Port",
        "Sync and remove",
        "Synced: 3 invited, 0 removed, 1 group changed",
        "Refused by the guard: nothing sent",
        "Check Server Hostname and Server Port",
        "Settings (",
    ] {
        assert!(
            seen.iter().any(|(_, t)| t.contains(expected)),
            "nothing showed {expected:?}"
        );
    }
    // and the check itself finds what it must
    for cli in [
        "run `sync --allow-mass-removal` once",
        "set ldap.port",
        "directory-connector test",
    ] {
        assert!(cli_language(cli).is_some(), "{cli}");
    }
}

/// Item 6: information goes away after about 5 s, an error stays until dismissed; the
/// notification has a strip of its own (it covers no control) and its text never runs under
/// its button.
#[test]
fn information_goes_away_and_errors_stay_without_covering_anything() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the test", |h| notice(h).contains("Test complete"));
    assert!(!h.state().banner.as_ref().unwrap().error);
    let started = Instant::now();
    wait(&mut h, "the information to go", |h| {
        h.state().banner.is_none()
    });
    let took = started.elapsed();
    assert!(
        took + Duration::from_millis(500) >= directory_connector::gui::INFO_SHOWN
            && took < directory_connector::gui::INFO_SHOWN + Duration::from_secs(2),
        "{took:?}"
    );

    // an error with a long text stays, its text beside the button, covering nothing
    click(&mut h, "Settings");
    type_into(
        &mut h,
        "Server Port",
        "not a port at all, and a long text to wrap",
    );
    h.run_steps(2);
    let fields: Vec<(String, egui::Rect)> = ["Save", "Server Hostname", "Root Path", "Dashboard"]
        .iter()
        .map(|l| (l.to_string(), h.get_by_label(l).rect()))
        .collect();
    click(&mut h, "Save");
    assert!(h.state().banner.as_ref().is_some_and(|b| b.error));
    std::thread::sleep(directory_connector::gui::INFO_SHOWN + Duration::from_millis(300));
    h.run_steps(3);
    assert!(h.state().banner.is_some(), "an error stays");
    let dismiss = h.get_by_label("Dismiss").rect();
    let text = h.state().banner.as_ref().unwrap().text.clone();
    let shown = h.get_by_label(&text).rect();
    assert!(
        shown.right() <= dismiss.left(),
        "the text {shown:?} runs under the button {dismiss:?}"
    );
    for (label, before) in &fields {
        let now = h.get_by_label(label).rect();
        assert_eq!(now, *before, "{label} moved");
        assert!(
            !now.intersects(shown) && !now.intersects(dismiss),
            "the notification covers {label}"
        );
    }
    click(&mut h, "Dismiss");
    assert!(h.state().banner.is_none());
}

/// Item 6: the status area keeps its place (the tabs under it do not move as a sync starts
/// and ends), and the sync's bar only goes forward.
#[test]
fn a_sync_moves_nothing_under_the_cursor_and_its_bar_never_goes_back() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let mut h = logged_in(&env, None);
    let tab = h.get_by_label("History").rect();
    let search = h.get_by_label("Search").rect();
    h.get_by_label("Sync Now").click();
    h.step();
    assert!(h.state().worker.busy().is_some(), "the sync runs");
    assert_eq!(
        h.get_by_label("History").rect(),
        tab,
        "the tabs moved as it started"
    );
    assert_eq!(h.get_by_label("Search").rect(), search);
    let mut bars = Vec::new();
    let start = Instant::now();
    while h.state().worker.busy().is_some() {
        let a = h.state().worker.activity.lock().unwrap().clone();
        if let Some(f) = a.fraction {
            bars.push(f);
        }
        assert_eq!(h.get_by_label("History").rect(), tab, "the tabs moved");
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
        h.step();
    }
    h.run_steps(3);
    assert_eq!(
        h.get_by_label("History").rect(),
        tab,
        "the tabs moved as it ended"
    );
    assert!(!bars.is_empty(), "the sync showed a bar");
    assert!(
        bars.windows(2).all(|w| w[1] >= w[0]),
        "the bar went back: {bars:?}"
    );
}

/// Item 8: a click on a header sorts by its column (again: the other way); a search shows
/// "n of N" on the tab.
#[test]
fn tables_sort_by_a_column_and_count_what_a_search_shows() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the test", |h| h.state().dashboard.users.len() == 3);
    let emails = |h: &Harness<'static, App>| -> Vec<String> {
        let u = &h.state().dashboard.users;
        u.visible.iter().map(|i| u.cells[*i][0].clone()).collect()
    };
    click(&mut h, "Email");
    assert_eq!(
        emails(&h),
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
    click(&mut h, "Email");
    assert_eq!(
        emails(&h),
        ["carol@example.com", "bob@example.com", "alice@example.com"]
    );
    // the screen follows: carol's row above alice's
    let carol = h.get_by_label("carol@example.com").rect();
    let alice = h.get_by_label("alice@example.com").rect();
    assert!(carol.top() < alice.top());
    type_into(&mut h, "Search", "bob");
    h.run_steps(2);
    assert!(
        has_label(&h, "Users (1 of 3)"),
        "the tab says n of N: {:?}",
        texts(&h)
    );
    assert_eq!(emails(&h), ["bob@example.com"]);
    type_into(&mut h, "Search", "");
    h.run_steps(2);
    assert!(has_label(&h, "Users (3)"));
}

/// Item 8: the chart of members over time has a time axis; the History table says what each
/// run did, with "—" where a run counted nothing.
#[test]
fn the_history_chart_has_a_time_axis_and_runs_say_what_they_did() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.ok(&["sync"]);
    env.ok(&["sync"]);
    env.set("ldap.port", "1");
    env.run(&["sync"]);
    let mut h = logged_in(&env, None);
    wait(&mut h, "the history", |h| {
        h.state().dashboard.history.len() == 3
    });
    click(&mut h, "History");
    assert_eq!(h.state().dashboard.history_points.len(), 2);
    assert!(has_label(
        &h,
        "Synced: 3 invited, 0 removed, 1 group changed"
    ));
    assert!(has_label(&h, "Unchanged: nothing to send"));
    assert!(has_label(&h, "Failed: nothing sent"));
    let rows = &h.state().dashboard.history.cells;
    assert_eq!(rows[0][2], "\u{2014}", "a failed run counted no members");
    assert_eq!(rows[1][2], "3");
    // the chart, its axes named for a screen reader too (the snapshot shows them drawn)
    assert!(has_label(&h, "Members over time"));
}

/// Item 8: the Import dialog's Preview says whether Import needs Replace and folds the TOML
/// away; after the import its next step is the Test Now button, which runs a test.
#[test]
fn the_import_dialog_says_when_replace_is_needed_and_its_next_step_is_a_button() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    let up = upstream_data(&server, &slapd);
    let mut h = window(&env, None);
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));
    click(&mut h, "Import from Bitwarden Directory Connector…");
    assert!(has_label(&h, "Browse…"), "a native Browse");
    type_into(
        &mut h,
        "Official connector's data",
        up.path().to_str().unwrap(),
    );
    click(&mut h, "Preview");
    assert!(has_label(&h, "Import needs no Replace"));
    // the TOML is folded away until opened
    assert!(!has_label(&h, "[ldap]"));
    click(&mut h, "The configuration file (config.toml)");
    assert!(has_label(&h, "[ldap]"));
    click(&mut h, "Import");
    wait(&mut h, "the import", |h| has_label(h, "Imported from"));
    wait(&mut h, "the dashboard behind", |h| {
        h.state().status.as_ref().is_some_and(|s| s.logged_in)
    });
    // a second preview now needs Replace
    click(&mut h, "Preview");
    assert!(has_label(&h, "Import needs \u{201c}Replace"));
    click(&mut h, "Replace this connector's configuration");
    click(&mut h, "Import");
    wait(&mut h, "the import", |h| has_label(h, "Imported from"));
    // the dialog's Test Now (the Dashboard's is behind it, higher up)
    let next = h
        .get_all_by_label("Test Now")
        .max_by(|a, b| a.rect().top().total_cmp(&b.rect().top()))
        .unwrap();
    next.click();
    h.run_steps(3);
    assert!(!h.state().import.open, "the dialog closed");
    wait(&mut h, "the test", |h| h.state().dashboard.users.len() == 3);
}

/// Item 1 (the service's last run) and item 5: the service saves its run's tables and the
/// open window shows them; a plan the member guard refused names the groups that lose
/// members.
#[test]
fn the_window_shows_the_services_run_and_the_groups_a_refusal_would_empty() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "1");
    env.ok(&["sync"]);
    let mut h = logged_in(&env, None);

    // two people leave; the service's run is refused and saves its tables
    slapd.delete(&user_dn("bob"));
    slapd.delete(&user_dn("carol"));
    env.set("service.schedule", "* * * * * *");
    let service = env
        .command(&["service"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let service = support::xvfb::Killed(service);
    let tables = env.path().join(directory_connector::sync::tables::FILE);
    let start = Instant::now();
    while !tables.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no tables saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(service);
    wait(&mut h, "the service's tables", |h| {
        h.state().dashboard.as_of.contains("service run")
    });
    let d = &h.state().dashboard;
    assert_eq!(d.users.len(), 1, "the user the service read");
    assert!(d.refused.is_some(), "its refusal");
    assert_eq!(d.tables.groups_losing, ["Staff: 1 out"]);
    click(&mut h, "Sync anyway (this once)...");
    assert!(has_label(&h, "1 group(s) would lose members"));
    assert!(has_label(&h, "Staff: 1 out"));
}
