//! `stevedore validate` and `stevedore schema` as a user runs them: the real
//! binary, its exit statuses, its human and JSON output.

use std::process::{Command, Output};

use crate::repo;

fn stevedore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the stevedore binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn shipped_specs_and_examples_are_valid() {
    let out = stevedore(&["validate", "specs", "examples/policies"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("ok: 7 policies, 1 budget and 1 cluster in 8 files"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_invalid_file_exits_1_with_file_line_and_column() {
    let out = stevedore(&["validate", "tests/fixtures/invalid/typos.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("--> tests/fixtures/invalid/typos.yaml:"),
        "{text}"
    );
    assert!(text.contains("help: did you mean `maxSkew`?"), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("invalid: "),
        "{text}"
    );
}

#[test]
fn valid_and_invalid_paths_together_still_exit_1() {
    let out = stevedore(&["validate", "specs", "tests/fixtures/invalid/typos.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_path_exits_2() {
    let out = stevedore(&["validate", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no/such/dir: no such file or directory")
    );
}

#[test]
fn a_directory_without_policy_files_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "not a policy").unwrap();
    let out = stevedore(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no policy files"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(stevedore(&["validate"]).status.code(), Some(2));
    assert_eq!(
        stevedore(&["validate", "--output", "xml", "specs"])
            .status
            .code(),
        Some(2)
    );
}

/// Durations and `--generate` are checked before any work starts: a bad
/// value exits 2 naming its flag and what it takes, for every command.
#[test]
fn a_bad_duration_or_size_is_a_usage_error_naming_the_flag() {
    for (args, flag, says) in [
        (
            &["run", "--specs", "specs", "--resync", "5 minutes"][..],
            "--resync",
            "not a duration such as 30s",
        ),
        (
            &["run", "--specs", "specs", "--git-poll", "often"][..],
            "--git-poll",
            "not a duration",
        ),
        (
            &["run", "--specs", "specs", "--lease-duration", "15"][..],
            "--lease-duration",
            "not a duration",
        ),
        (
            &["sim", "--generate", "10,10,100", "--duration", "ten"][..],
            "--duration",
            "not a duration",
        ),
        (
            &["sim", "--generate", "10,10"][..],
            "--generate",
            "HOSTS,SERVICES,TASKS",
        ),
    ] {
        let out = stevedore(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn json_output_has_file_line_column_message_and_rule() {
    let out = stevedore(&[
        "validate",
        "--output",
        "json",
        "tests/fixtures/invalid/typos.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(report["valid"], false);
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert!(!diagnostics.is_empty());
    for d in diagnostics {
        for field in ["file", "line", "column", "message", "rule", "severity"] {
            assert!(d.get(field).is_some(), "{field} missing in {d}");
        }
    }
    let unknown = diagnostics
        .iter()
        .find(|d| d["rule"] == "unknown-field")
        .expect("an unknown-field diagnostic");
    assert_eq!(unknown["file"], "tests/fixtures/invalid/typos.yaml");
    assert_eq!(unknown["help"], "did you mean `maxSkew`?");
    assert!(unknown["line"].as_u64().unwrap() > 0 && unknown["column"].as_u64().unwrap() > 0);
}

#[test]
fn json_output_of_valid_files_lists_the_policies() {
    let out = stevedore(&["validate", "--output", "json", "specs"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    let mut names: Vec<&str> = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api-spread",
            "log-agent-per-host",
            "web-balanced",
            "worker-autoscale"
        ]
    );
}

/// git-sync and similar tools publish a checkout by swapping a symlink;
/// directories are read through symlinks, and hidden ones (`.git`) skipped.
#[test]
fn directories_are_read_through_symlinks_and_skip_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    let rev = dir.path().join("rev-1");
    std::fs::create_dir_all(rev.join(".git")).unwrap();
    std::fs::copy(repo("specs/payments/web.yaml"), rev.join("web.yaml")).unwrap();
    std::fs::write(rev.join(".git/broken.yaml"), "{{{").unwrap();
    std::fs::write(rev.join("notes.txt"), "{{{").unwrap();
    let current = dir.path().join("current");
    std::os::unix::fs::symlink(&rev, &current).unwrap();
    let out = stevedore(&["validate", current.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("ok: 1 policy in 1 file"));
}

#[test]
fn an_explicit_file_is_read_whatever_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.txt");
    std::fs::copy(repo("specs/payments/web.yaml"), &file).unwrap();
    assert_eq!(
        stevedore(&["validate", file.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = stevedore(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo(stevedore::schema::SCHEMA_PATH)).unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let commands = [
        "validate",
        "schema",
        "sim",
        "plan",
        "run",
        "install",
        "uninstall",
        "iam-policy",
    ];
    let bash = stevedore(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = String::from_utf8(bash.stdout).unwrap();
    for c in commands {
        assert!(script.contains(c), "completion lacks {c}");
    }
    // The script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stevedore.bash");
    std::fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let man = stevedore(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    // roff escapes hyphens.
    let page = String::from_utf8(man.stdout).unwrap().replace("\\-", "-");
    assert!(
        page.starts_with(".ie") && page.contains(".SH NAME"),
        "{page}"
    );
    for c in commands {
        assert!(page.contains(c), "man page lacks {c}");
    }
}

/// Runs git in `dir`, failing the test on error.
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_git_source_reads_each_new_commits_policy_files() {
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q"]);
    std::fs::create_dir_all(origin.path().join("payments")).unwrap();
    std::fs::write(origin.path().join("payments/web.yaml"), "one").unwrap();
    std::fs::write(origin.path().join("README.md"), "not a policy").unwrap();
    git(origin.path(), &["add", "."]);
    git(origin.path(), &["commit", "-q", "-m", "first"]);

    let cache = tempfile::tempdir().unwrap();
    let source = stevedore::source::git::GitSource {
        url: format!("file://{}", origin.path().display()),
        reference: "main".into(),
        cache: cache.path().join("repo"),
    };
    let first = source.fetch().unwrap();
    assert_eq!(
        first.files,
        vec![("payments/web.yaml".to_owned(), b"one".to_vec())]
    );
    assert_eq!(first.id.len(), 40);

    std::fs::write(origin.path().join("payments/web.yaml"), "two").unwrap();
    git(origin.path(), &["commit", "-q", "-am", "second"]);
    let second = source.fetch().unwrap();
    assert_ne!(second.id, first.id, "the new commit is fetched");
    assert_eq!(
        second.files,
        vec![("payments/web.yaml".to_owned(), b"two".to_vec())]
    );

    let missing = stevedore::source::git::GitSource {
        reference: "nope".into(),
        ..source
    };
    assert!(
        missing
            .fetch()
            .unwrap_err()
            .message
            .contains("no ref `nope`")
    );
}

#[test]
fn a_git_source_fetches_over_http_and_never_shows_or_sends_a_password_in_clear() {
    let root = tempfile::tempdir().unwrap();
    let origin = root.path().join("policies.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q"]);
    std::fs::write(origin.join("web.yaml"), "one").unwrap();
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "-q", "-m", "first"]);
    let host = crate::githost::serve(root.path(), false, None);
    let (base, served) = (host.url, host.served);
    let cache = tempfile::tempdir().unwrap();

    // Credentials are sent over https only; over http the fetch is refused
    // before any request, and the error does not show the password.
    let with_password = stevedore::source::git::GitSource {
        url: base.replace("http://", "http://stevedore:s3cret@") + "/policies.git",
        reference: "main".into(),
        cache: cache.path().join("with-password"),
    };
    let error = with_password.fetch().unwrap_err().to_string();
    assert!(error.contains("clear text"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    assert!(error.contains("stevedore:***@"), "{error}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);

    let source = stevedore::source::git::GitSource {
        url: format!("{base}/policies.git"),
        reference: "main".into(),
        cache: cache.path().join("repo"),
    };
    let first = source.fetch().unwrap();
    assert_eq!(first.files, vec![("web.yaml".to_owned(), b"one".to_vec())]);
    std::fs::write(origin.join("web.yaml"), "two").unwrap();
    git(&origin, &["commit", "-q", "-am", "second"]);
    let second = source.fetch().unwrap();
    assert_ne!(second.id, first.id, "the new commit is fetched");
    assert_eq!(second.files, vec![("web.yaml".to_owned(), b"two".to_vec())]);
    // The URL (which may hold a token) is not written into the clone.
    let config = std::fs::read_to_string(cache.path().join("repo/config")).unwrap();
    assert!(!config.contains("127.0.0.1"), "{config}");
}

#[test]
fn status_gives_up_on_a_server_that_never_answers() {
    // Connections are accepted (by the kernel's backlog), never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stevedore"))
        .args(["status", "--url", &url, "--timeout", "1s"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {url}/status: ")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("timeout"), "{stderr}");
    // It gave up at its timeout, not at some far later one.
    assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
    drop(silent);
}
