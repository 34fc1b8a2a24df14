//! Plain-text tables of the API's JSON, for people.

use serde_json::Value;
use std::fmt::Write;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table with aligned columns; the last column is never padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<width$}", width = widths[i]) })
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

/// Instance outcomes counted by SSM status detail, e.g. `2 Success, 1 Failed`.
pub fn counts(release: &Value) -> String {
    // Listings carry the counts; a single release its outcomes.
    if let Some(listed) = release["instance_counts"].as_object() {
        if listed.is_empty() {
            return "-".into();
        }
        return listed.iter().map(|(d, n)| format!("{n} {d}")).collect::<Vec<_>>().join(", ");
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for instance in release["instances"].as_array().into_iter().flatten() {
        let detail = text(&instance["detail"]);
        match counts.iter_mut().find(|(d, _)| *d == detail) {
            Some((_, n)) => *n += 1,
            None => counts.push((detail, 1)),
        }
    }
    if counts.is_empty() {
        return "-".into();
    }
    counts.iter().map(|(d, n)| format!("{n} {d}")).collect::<Vec<_>>().join(", ")
}

pub fn releases(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["id"]),
                text(&r["kind"]),
                text(&r["status"]),
                text(&r["created_at"]),
                counts(r),
                text(&r["flakeref"]),
            ]
        })
        .collect();
    let mut out = table(&["ID", "KIND", "STATUS", "CREATED", "INSTANCES", "FLAKEREF"], &rows);
    if let Some(next) = page["next_cursor"].as_str() {
        let _ = writeln!(out, "more: --cursor {next}");
    }
    out
}

pub fn release(release: &Value) -> String {
    let mut out = String::new();
    for key in [
        "id",
        "fleet",
        "kind",
        "status",
        "status_reason",
        "flakeref",
        "revision",
        "rollback_of",
        "replaces",
        "rolled_back_by",
        "requested_by",
        "reason",
        "run_url",
        "command_id",
        "created_at",
        "updated_at",
        "deadline",
    ] {
        if !release[key].is_null() {
            let _ = writeln!(out, "{:<13} {}", format!("{key}:"), text(&release[key]));
        }
    }
    if let Some(waves) = release["rollout"]["waves"].as_array().filter(|w| !w.is_empty()) {
        let sizes: Vec<String> =
            waves.iter().map(|w| w["instance_ids"].as_array().map_or(0, Vec::len).to_string()).collect();
        let _ = writeln!(out, "{:<14}{}", "waves:", sizes.join(" + "));
        // The ids `aws ssm get-command-invocation` and `list-command-invocations` take.
        for (n, wave) in waves.iter().enumerate() {
            let ids: Vec<String> = wave["command_ids"].as_array().into_iter().flatten().map(text).collect();
            let mut sent =
                if ids.is_empty() { "not sent yet".to_owned() } else { format!("commands {}", ids.join(" ")) };
            match (wave["sent_ms"].as_u64(), wave["judged_ms"].as_u64()) {
                (Some(at), Some(judged)) => {
                    let took = std::time::Duration::from_millis(judged.saturating_sub(at));
                    let _ = write!(sent, "; judged {} after it was sent", super::progress::clock(took));
                }
                (Some(_), None) => sent.push_str("; not judged yet"),
                _ => {}
            }
            let _ = writeln!(out, "{:<14}{}", format!("wave {}:", n + 1), sent);
        }
    }
    if let Some(launches) = release["launches"].as_array().filter(|l| !l.is_empty()) {
        let shown: Vec<String> = launches
            .iter()
            .map(|l| match (l["instance_id"].as_str(), l["error"].as_str()) {
                (Some(id), _) => id.to_owned(),
                (None, Some(error)) => format!("slot {} failed: {error}", text(&l["slot"])),
                (None, None) => format!("slot {} not launched yet", text(&l["slot"])),
            })
            .collect();
        let _ = writeln!(out, "{:<14}{}", "launched:", shown.join(", "));
    }
    let control = &release["control"];
    if let Some(by) = control["paused"]["by"].as_str() {
        let how =
            if control["paused"]["automatic"] == true { " before its next wave; resume is the promote" } else { "" };
        let _ = writeln!(out, "{:<14}by {by}{how}", "PAUSED:");
    }
    if let Some(by) = control["aborted"]["by"].as_str() {
        let _ = writeln!(out, "{:<14}by {by}", "aborted:");
    }
    let stopping = &release["stopping"];
    for (key, label) in [("cancelled", "cancelled:"), ("unsettled", "unsettled:")] {
        if let Some(ids) = stopping[key].as_array().filter(|ids| !ids.is_empty()) {
            let ids: Vec<String> = ids.iter().map(text).collect();
            let _ = writeln!(out, "{label:<14}{}", ids.join(", "));
        }
    }
    let rows: Vec<Vec<String>> = release["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let tail = [&i["stderr_tail"], &i["stdout_tail"]]
                .iter()
                .find_map(|t| t.as_str().filter(|s| !s.is_empty()))
                .map(|s| s.lines().last().unwrap_or_default().to_owned())
                .unwrap_or_default();
            vec![text(&i["instance_id"]), text(&i["status"]), text(&i["detail"]), text(&i["exit_code"]), tail]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&["INSTANCE", "STATUS", "DETAIL", "EXIT", "OUTPUT"], &rows));
    }
    // The first failed hosts' last lines: the document prints its log's last
    // lines before the verdict, which is all the table has room for.
    let failed = release["instances"].as_array().into_iter().flatten().filter(|i| i["status"] != "Success");
    for instance in failed.take(SHOWN_FAILURES) {
        let Some(tail) = [&instance["stderr_tail"], &instance["stdout_tail"]]
            .iter()
            .find_map(|t| t.as_str().filter(|s| s.lines().count() > 1))
        else {
            continue;
        };
        let _ = writeln!(out, "\n{} printed:", text(&instance["instance_id"]));
        let lines: Vec<&str> = tail.lines().collect();
        for line in &lines[lines.len().saturating_sub(SHOWN_LINES)..] {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Failed hosts whose output `show` prints, and its last lines each.
const SHOWN_FAILURES: usize = 3;
const SHOWN_LINES: usize = 12;

pub fn fleet(fleet: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet:        {} (tag {}={})",
        text(&fleet["fleet"]),
        text(&fleet["target_tag"]["key"]),
        text(&fleet["target_tag"]["value"])
    );
    let desired = &fleet["desired_release"];
    let _ = writeln!(
        out,
        "desired:      {} {} ({})",
        text(&desired["id"]),
        text(&desired["flakeref"]),
        text(&desired["status"])
    );
    let _ = writeln!(out, "last good:    {}", text(&fleet["last_good_release_id"]));
    let rollout = &fleet["rollout"];
    if rollout.is_null() {
        let _ = writeln!(out, "rollout:      none");
    } else {
        let _ = writeln!(
            out,
            "rollout:      {} wave {}: {} succeeded, {} failed, {} pending",
            text(&rollout["release_id"]),
            text(&rollout["wave"]),
            text(&rollout["succeeded"]),
            text(&rollout["failed"]),
            text(&rollout["pending"])
        );
        if let Some(reason) = rollout["stopping"].as_str() {
            let _ = writeln!(out, "stopping:     {reason}; awaiting the applies still running");
        }
        if let Some(by) = rollout["paused"]["by"].as_str() {
            let _ = writeln!(
                out,
                "PAUSED:       by {by}; `flakefleet resume {}` lets the next wave start",
                text(&rollout["release_id"])
            );
        }
    }
    match fleet["halted"]["reason"].as_str() {
        Some(reason) => {
            let _ = writeln!(out, "HALTED:       {reason}");
        }
        None => {
            let _ = writeln!(out, "halted:       no");
        }
    }
    let rows: Vec<Vec<String>> = fleet["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| vec![text(&i["instance_id"]), text(&i["release_id"]), text(&i["flakeref"])])
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&["INSTANCE", "RELEASE", "FLAKEREF"], &rows));
    }
    out
}

pub fn reconcile(report: &Value) -> String {
    let mut out = format!("reconcile: {}\n", text(&report["outcome"]));
    for key in ["launched", "reapplied"] {
        if let Some(ids) = report[key].as_array().filter(|a| !a.is_empty()) {
            let ids: Vec<String> = ids.iter().map(text).collect();
            let _ = writeln!(out, "{key}: {}", ids.join(" "));
        }
    }
    if let Some(why) = report["skipped"].as_str() {
        let _ = writeln!(out, "skipped: {why}");
    }
    if !report["release"].is_null() {
        let r = &report["release"];
        let _ =
            writeln!(out, "release: {} {} {} ({})", text(&r["id"]), text(&r["kind"]), text(&r["status"]), counts(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_count() {
        let page = json!({"releases": [
            {"id": "01A", "kind": "deploy", "status": "succeeded", "created_at": "t", "flakeref": "a/b/=1.0.0#x",
             "instance_counts": {"Failed": 1, "Success": 2}},
            {"id": "01B", "kind": "rollback", "status": "in_progress", "created_at": "t", "flakeref": "a/b/=0.9.0#x", "instances": []}
        ], "next_cursor": "01B"});
        let out = releases(&page);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID   KIND      STATUS       CREATED  INSTANCES            FLAKEREF");
        assert!(lines[1].contains("1 Failed, 2 Success"), "{out}");
        let one = json!({"instances": [{"detail": "Success"}, {"detail": "Success"}, {"detail": "Failed"}]});
        assert_eq!(counts(&one), "2 Success, 1 Failed");
        assert_eq!(lines[3], "more: --cursor 01B");
    }

    #[test]
    fn a_release_shows_where_it_came_from_its_command_ids_and_its_launches() {
        let shown = release(&json!({"id": "01A", "fleet": "prod", "kind": "repair", "status": "succeeded",
            "requested_by": "arn:aws:sts::1:assumed-role/ci/run", "reason": "fix: the thing",
            "run_url": "https://github.com/acme/infra/actions/runs/1", "rolled_back_by": "01B",
            "rollout": {"waves": [{"instance_ids": ["i-1"], "command_ids": ["c-1"], "sent_ms": 1000, "judged_ms": 66000},
                                  {"instance_ids": ["i-2", "i-3"], "command_ids": []}]},
            "launches": [{"slot": 0, "instance_id": "i-9"}, {"slot": 1, "error": "InsufficientInstanceCapacity"}]}));
        for line in [
            "fleet:        prod\n",
            "requested_by: arn:aws:sts::1:assumed-role/ci/run\n",
            "reason:       fix: the thing\n",
            "run_url:      https://github.com/acme/infra/actions/runs/1\n",
            "rolled_back_by: 01B\n",
            "waves:        1 + 2\n",
            "wave 1:       commands c-1; judged 1m05s after it was sent\n",
            "wave 2:       not sent yet\n",
            "launched:     i-9, slot 1 failed: InsufficientInstanceCapacity\n",
        ] {
            assert!(shown.contains(line), "{line:?} in\n{shown}");
        }
    }

    #[test]
    fn a_stopping_release_names_what_it_cancelled_and_what_it_could_not_settle() {
        let stopping = json!({"id": "01A", "status": "rolled_back",
            "stopping": {"reason": "1 failed", "since_ms": 1, "cancelled": ["i-3"], "unsettled": ["i-2"]}});
        let out = release(&stopping);
        assert!(out.contains("cancelled:    i-3\n"), "{out}");
        assert!(out.contains("unsettled:    i-2\n"), "{out}");
        let fleet_view = json!({"fleet": "f", "rollout": {"release_id": "01A", "wave": 2, "succeeded": 1, "failed": 1,
            "pending": 1, "stopping": "1 failed"}});
        assert!(fleet(&fleet_view).contains("stopping:     1 failed; awaiting the applies still running"));
    }
}
