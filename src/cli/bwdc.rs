//! The CLI side of switching from the official connector: `import-bwdc` and its summary.

use std::path::Path;

use super::output::Output;
use crate::bwdc::{ImportOptions, OsKeychain, Report, import};
use crate::connector::Connector;

/// Runs `import-bwdc` and prints its summary (or its JSON).
pub fn import_command(opts: &ImportOptions, data_dir: &Path, out: &Output) -> anyhow::Result<i32> {
    let conn = Connector::open(data_dir)?;
    let report = import(opts, data_dir, conn.secrets.as_ref(), &OsKeychain)?;
    if out.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("success".into(), true.into());
        }
        out.json_value(&v);
    } else {
        for line in summary(&report, &conn.secrets.describe()) {
            out.line(&line);
        }
    }
    Ok(0)
}

/// The summary in words (the window shows the same lines).
pub fn summary(r: &Report, store: &str) -> Vec<String> {
    let mut l = Vec::new();
    let layout = match &r.layout {
        crate::bwdc::Layout::Flat => "flat layout".to_string(),
        crate::bwdc::Layout::Account { user_id } => format!("account layout, account {user_id}"),
    };
    if r.dry_run {
        l.push(format!(
            "Dry run: nothing was written. From {} (state version {}, {layout}) the configuration \
             would be:",
            r.source.display(),
            r.state_version
        ));
        l.push(String::new());
        l.extend(r.config_toml.trim_end().lines().map(str::to_string));
        l.push(String::new());
    } else {
        l.push(format!(
            "Imported from {} (state version {}, {layout}). The official connector's files were \
             only read.",
            r.source.display(),
            r.state_version
        ));
    }
    l.push(format!("Settings ({}):", r.settings.len()));
    for s in &r.settings {
        l.push(format!("  {} = {}   (from {})", s.key, s.value, s.from));
    }
    l.push("Secrets:".into());
    if r.secrets.is_empty() {
        l.push("  none found".into());
    }
    for s in &r.secrets {
        let from = s.from.as_deref().unwrap_or("-");
        match (&s.problem, s.stored) {
            (None, true) => l.push(format!("  {}: stored in {store} (from {from})", s.key)),
            (None, false) => l.push(format!(
                "  {}: found (from {from}); would be stored in {store}",
                s.key
            )),
            (Some(p), _) => {
                l.push(format!("  {}: NOT imported: {p}", s.key));
                if let Some(c) = &s.command {
                    l.push(format!("      enter it with: {c}"));
                }
            }
        }
    }
    if !r.changes.is_empty() {
        l.push(
            "Changed so that this connector reads the directory as the official one did:".into(),
        );
        for c in &r.changes {
            l.push(format!("  - {c}"));
        }
    }
    if !r.warnings.is_empty() {
        l.push("Warnings:".into());
        for w in &r.warnings {
            l.push(format!("  - {w}"));
        }
    }
    if !r.not_imported.is_empty() {
        l.push("Not imported:".into());
        for s in &r.not_imported {
            l.push(format!("  - {}: {}", s.what, s.why));
        }
    }
    l.push("Next steps:".into());
    for (i, n) in r.next_steps.iter().enumerate() {
        l.push(format!("  {}. {n}", i + 1));
    }
    l
}
