# The job summary of one release (run.sh): what it is, its waves, the
# instances that did not succeed with their verdict line, and how to roll back.
# Every foreign string (host output, reasons, names) sits in a code span:
# escaping cannot stop GitHub's extended autolinks (a bare URL, www. or an
# e-mail address becomes a link with no markup), and nothing in a code span
# is markup, HTML or an entity. (Kinds, statuses and release ids are
# flakefleet's own enums and ULIDs, written as they are.) A table cell's pipe is still `\|` in a code
# span; a backslash before it would escape that backslash instead, so a space
# parts them; backticks, which would end the span, become quotes.
def code: tostring | gsub("[\\p{C}]"; " ") | gsub("`"; "'") | gsub("\\\\(?=\\|)"; "\\ ")
  | gsub("\\|"; "\\|") | if test("^ *$") then "-" else "`\(.)`" end;
def cell: if . == null or . == "" then "-" else code end;
def verdict: [.stderr_tail, .stdout_tail] | map(select(. != null and . != "")) | first // ""
  | split("\n") | map(select(test("\\S"))) | last // "";
def clock: if . < 60 then "\(.)s" elif . < 3600 then "\(. / 60 | floor)m\(. % 60)s" else "\(. / 3600 | floor)h\(. % 3600 / 60 | floor)m" end;
def millis: sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601;

. as $r
| (.instances // []) as $instances
| ($instances | map({key: .instance_id, value: .status}) | from_entries) as $status
| (if ($r.status | IN("pending", "in_progress")) then ($elapsed | tonumber)
   else (($r.updated_at | millis) - ($r.created_at | millis)) end) as $duration
| [
    "### flakefleet \($r.kind // "release") \($r.id): **\($r.status)**",
    "",
    "| | |",
    "|---|---|",
    "| Fleet | \($r.fleet | cell) |",
    "| Flakeref | \($r.flakeref | cell) |",
    "| Revision | \($r.revision | cell) |",
    "| Status | **\($r.status)**\(if $r.status_reason then ": " + ($r.status_reason | cell) else "" end) |",
    "| Duration | \($duration | floor | clock)\(if $timed_out == "true" then " (stopped waiting; the release goes on)" elif $waited == "false" then " (not waited for)" else "" end) |",
    "| Requested by | \($r.requested_by | cell) |",
    (if $r.rollback_of then "| Puts back | \($r.rollback_of) |" else empty end),
    (if $r.replaces then "| Replaces | \($r.replaces) |" else empty end),
    (if $r.rolled_back_by then "| Rolled back by | \($r.rolled_back_by) |" else empty end),
    "",
    (if ($r.rollout.waves // []) | length > 0 then
      "#### Waves", "",
      "| Wave | Instances | Succeeded | Failed | Pending | SSM commands |",
      "|---:|---:|---:|---:|---:|---|",
      ($r.rollout.waves | to_entries[] | .value.instance_ids as $ids
        | ($ids | map($status[.] // "Pending")) as $s
        | "| \(.key + 1) | \($ids | length) | \($s | map(select(. == "Success")) | length) | \($s | map(select(IN("Failed", "TimedOut", "Cancelled"))) | length) | \($s | map(select(IN("Success", "Failed", "TimedOut", "Cancelled") | not)) | length) | \(.value.command_ids | map(cell) | join(" ")) |"),
      ""
    else empty end),
    ($instances | map(select(.status != "Success")) as $bad
      | if ($bad | length) > 0 then
          "#### Instances that did not succeed", "",
          "| Instance | Status | Verdict |",
          "|---|---|---|",
          ($bad[] | "| \(.instance_id | cell) | \(.status | cell) (\(.detail | cell)) | \(verdict | cell) |"),
          ""
        else empty end),
    (if $r.status == "succeeded" then empty
     elif $r.rolled_back_by then "flakefleet rolled it back by itself (release \($r.rolled_back_by))."
     else
       "#### To roll back", "",
       "Run the Rollback workflow (an empty release id puts back the last release that succeeded before this one), or:",
       "", "```sh", "flakefleet rollback", "```"
     end),
    ""
  ]
| .[]
