//! Plain-text tables of the API's JSON, for people.

use crate::api::{Fleet, InstanceOutcome, Reconcile, Release, ReleasePage};
use std::fmt::Write;

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
pub fn counts(instances: &[InstanceOutcome]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for instance in instances {
        match counts.iter_mut().find(|(d, _)| *d == instance.detail) {
            Some((_, n)) => *n += 1,
            None => counts.push((&instance.detail, 1)),
        }
    }
    join_counts(counts)
}

fn join_counts<'a>(counts: impl IntoIterator<Item = (&'a str, usize)>) -> String {
    let shown: Vec<String> = counts.into_iter().map(|(d, n)| format!("{n} {d}")).collect();
    if shown.is_empty() {
        return "-".into();
    }
    shown.join(", ")
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

pub fn releases(page: &ReleasePage) -> String {
    let rows: Vec<Vec<String>> = page
        .releases
        .iter()
        .map(|r| {
            vec![
                r.head.id.clone(),
                r.head.kind.as_str().to_owned(),
                r.head.status.as_str().to_owned(),
                r.head.created_at.clone(),
                join_counts(r.instance_counts.iter().map(|(d, n)| (d.as_str(), *n))),
                r.head.flakeref.clone(),
            ]
        })
        .collect();
    let mut out = table(&["ID", "KIND", "STATUS", "CREATED", "INSTANCES", "FLAKEREF"], &rows);
    if let Some(next) = &page.next_cursor {
        let _ = writeln!(out, "more: --cursor {next}");
    }
    out
}

pub fn release(release: &Release) -> String {
    let mut out = String::new();
    let fields: [(&str, Option<&str>); 18] = [
        ("id", Some(&release.head.id)),
        ("fleet", Some(&release.head.fleet)),
        ("kind", Some(release.head.kind.as_str())),
        ("status", Some(release.head.status.as_str())),
        ("phase", Some(release.head.phase.as_str())),
        ("status_reason", release.head.status_reason.as_deref()),
        ("flakeref", Some(&release.head.flakeref)),
        ("revision", release.head.revision.as_deref()),
        ("rollback_of", release.head.rollback_of.as_deref()),
        ("replaces", release.head.replaces.as_deref()),
        ("rolled_back_by", release.rolled_back_by.as_deref()),
        ("requested_by", release.head.requested_by.as_deref()),
        ("reason", release.head.reason.as_deref()),
        ("run_url", release.head.run_url.as_deref()),
        ("command_id", release.head.command_id.as_deref()),
        ("created_at", Some(&release.head.created_at)),
        ("updated_at", Some(&release.head.updated_at)),
        ("deadline", Some(&release.head.deadline)),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            let _ = writeln!(out, "{:<13} {value}", format!("{key}:"));
        }
    }
    if let Some(waves) = release.rollout.as_ref().map(|r| &r.waves).filter(|w| !w.is_empty()) {
        let sizes: Vec<String> = waves.iter().map(|w| w.instance_ids.len().to_string()).collect();
        let _ = writeln!(out, "{:<14}{}", "waves:", sizes.join(" + "));
        // The ids `aws ssm get-command-invocation` and `list-command-invocations` take.
        for (n, wave) in waves.iter().enumerate() {
            let mut sent = match wave.command_ids.is_empty() {
                true => "not sent yet".to_owned(),
                false => format!("commands {}", wave.command_ids.join(" ")),
            };
            match (wave.sent_ms, wave.judged_ms) {
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
    if !release.head.launches.is_empty() {
        let shown: Vec<String> = release
            .head
            .launches
            .iter()
            .map(|l| match (&l.instance_id, &l.error) {
                (Some(id), _) => id.clone(),
                (None, Some(error)) => format!("slot {} failed: {error}", l.slot),
                (None, None) => format!("slot {} not launched yet", l.slot),
            })
            .collect();
        let _ = writeln!(out, "{:<14}{}", "launched:", shown.join(", "));
    }
    let control = release.head.control.as_ref();
    if let Some(paused) = control.and_then(|c| c.paused.as_ref()) {
        let how = if paused.automatic { " before its next wave; resume is the promote" } else { "" };
        let _ = writeln!(out, "{:<14}by {}{how}", "PAUSED:", paused.by);
    }
    if let Some(aborted) = control.and_then(|c| c.aborted.as_ref()) {
        let _ = writeln!(out, "{:<14}by {}", "aborted:", aborted.by);
    }
    if let Some(stopping) = &release.head.stopping {
        for (ids, label) in [(&stopping.cancelled, "cancelled:"), (&stopping.unsettled, "unsettled:")] {
            if !ids.is_empty() {
                let _ = writeln!(out, "{label:<14}{}", ids.join(", "));
            }
        }
    }
    let rows: Vec<Vec<String>> = release
        .instances
        .iter()
        .map(|i| {
            let tail = [&i.stderr_tail, &i.stdout_tail]
                .iter()
                .find(|t| !t.is_empty())
                .map(|s| s.lines().last().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let exit = i.exit_code.map_or("-".to_owned(), |c| c.to_string());
            vec![i.instance_id.clone(), i.status.clone(), i.detail.clone(), exit, tail]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&["INSTANCE", "STATUS", "DETAIL", "EXIT", "OUTPUT"], &rows));
    }
    // The first failed hosts' last lines: the document prints its log's last
    // lines before the verdict, which is all the table has room for.
    let failed = release.instances.iter().filter(|i| i.status != "Success");
    for instance in failed.take(SHOWN_FAILURES) {
        let Some(tail) = [&instance.stderr_tail, &instance.stdout_tail].into_iter().find(|t| t.lines().count() > 1)
        else {
            continue;
        };
        let _ = writeln!(out, "\n{} printed:", instance.instance_id);
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

pub fn fleet(fleet: &Fleet) -> String {
    let mut out = String::new();
    let tag = &fleet.target_tag;
    let _ = writeln!(out, "fleet:        {} (tag {}={})", fleet.fleet, tag.key, tag.value);
    let desired = fleet.desired_release.as_ref();
    let _ = writeln!(
        out,
        "desired:      {} {} ({})",
        or_dash(desired.map(|d| d.head.id.as_str())),
        or_dash(desired.map(|d| d.head.flakeref.as_str())),
        or_dash(desired.map(|d| d.head.status.as_str()))
    );
    let _ = writeln!(out, "last good:    {}", or_dash(fleet.last_good_release_id.as_deref()));
    match &fleet.rollout {
        None => {
            let _ = writeln!(out, "rollout:      none");
        }
        Some(rollout) => {
            let _ = writeln!(
                out,
                "rollout:      {} wave {}: {} succeeded, {} failed, {} pending",
                rollout.release_id, rollout.wave, rollout.succeeded, rollout.failed, rollout.pending
            );
            if let Some(reason) = &rollout.stopping {
                let _ = writeln!(out, "stopping:     {reason}; awaiting the applies still running");
            }
            if let Some(paused) = &rollout.paused {
                let _ = writeln!(
                    out,
                    "PAUSED:       by {}; `flakefleet resume {}` lets the next wave start",
                    paused.by, rollout.release_id
                );
            }
        }
    }
    match &fleet.halted {
        Some(halt) => {
            let _ = writeln!(out, "HALTED:       {}", halt.reason);
        }
        None => {
            let _ = writeln!(out, "halted:       no");
        }
    }
    let rows: Vec<Vec<String>> = fleet
        .instances
        .iter()
        .map(|i| vec![i.instance_id.clone(), or_dash(i.release_id.as_deref()), or_dash(i.flakeref.as_deref())])
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&["INSTANCE", "RELEASE", "FLAKEREF"], &rows));
    }
    out
}

pub fn reconcile(report: &Reconcile) -> String {
    let mut out = format!("reconcile: {}\n", report.outcome.as_str());
    for (key, ids) in [("launched", &report.launched), ("reapplied", &report.reapplied)] {
        if !ids.is_empty() {
            let _ = writeln!(out, "{key}: {}", ids.join(" "));
        }
    }
    if let Some(why) = &report.skipped {
        let _ = writeln!(out, "skipped: {why}");
    }
    if let Some(r) = &report.release {
        let _ = writeln!(
            out,
            "release: {} {} {} ({})",
            r.head.id,
            r.head.kind.as_str(),
            r.head.status.as_str(),
            counts(&r.instances)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::release_with;
    use serde_json::json;

    #[test]
    fn tables_align_and_count() {
        let listed = |id: &str, kind: &str, status: &str, flakeref: &str, counts| {
            json!({"id": id, "fleet": "prod", "kind": kind, "status": status, "phase": "final", "shape": "staged",
                   "command_id": null, "created_at": "t", "updated_at": "t", "deadline": "t", "flakeref": flakeref,
                   "instance_counts": counts, "version": 1})
        };
        let page: ReleasePage = serde_json::from_value(json!({"releases": [
            listed("01A", "deploy", "succeeded", "a/b/=1.0.0#x", json!({"Failed": 1, "Success": 2})),
            listed("01B", "rollback", "in_progress", "a/b/=0.9.0#x", json!({})),
        ], "next_cursor": "01B"}))
        .unwrap();
        let out = releases(&page);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID   KIND      STATUS       CREATED  INSTANCES            FLAKEREF");
        assert!(lines[1].contains("1 Failed, 2 Success"), "{out}");
        assert!(lines[2].contains("  -  "), "{out}");
        let one = release_with(json!({"instances": [
            {"instance_id": "i-1", "status": "Success", "detail": "Success"},
            {"instance_id": "i-2", "status": "Success", "detail": "Success"},
            {"instance_id": "i-3", "status": "Failed", "detail": "Failed"}]}));
        assert_eq!(counts(&one.instances), "2 Success, 1 Failed");
        assert_eq!(lines[3], "more: --cursor 01B");
    }

    #[test]
    fn a_release_shows_where_it_came_from_its_command_ids_and_its_launches() {
        let shown =
            release(&release_with(json!({"id": "01A", "fleet": "prod", "kind": "repair", "status": "succeeded",
            "phase": "final", "requested_by": "arn:aws:sts::1:assumed-role/ci/run", "reason": "fix: the thing",
            "run_url": "https://github.com/acme/infra/actions/runs/1", "rolled_back_by": "01B",
            "rollout": {"fixed": true, "waves": [
                {"instance_ids": ["i-1"], "command_ids": ["c-1"], "claimed_ms": 1, "sent_ms": 1000, "judged_ms": 66000},
                {"instance_ids": ["i-2", "i-3"], "command_ids": [], "claimed_ms": 1}]},
            "launches": [{"slot": 0, "instance_id": "i-9"}, {"slot": 1, "error": "InsufficientInstanceCapacity"}]})));
        for line in [
            "fleet:        prod\n",
            "phase:        final\n",
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
        let stopping = release_with(json!({"id": "01A", "status": "rolled_back",
            "stopping": {"reason": "1 failed", "since_ms": 1, "cancelled": ["i-3"], "unsettled": ["i-2"]}}));
        let out = release(&stopping);
        assert!(out.contains("cancelled:    i-3\n"), "{out}");
        assert!(out.contains("unsettled:    i-2\n"), "{out}");
        let fleet_view: Fleet =
            serde_json::from_value(json!({"fleet": "f", "target_tag": {"key": "Name", "value": "x"},
            "desired_release": null, "last_good_release_id": null, "lease": null, "halted": null,
            "instances": [], "unreachable": [],
            "rollout": {"release_id": "01A", "kind": "deploy", "wave": 2, "targeted": 3, "succeeded": 1, "failed": 1,
                        "unreachable": 0, "pending": 1, "stopping": "1 failed"}}))
            .unwrap();
        assert!(fleet(&fleet_view).contains("stopping:     1 failed; awaiting the applies still running"));
    }
}
