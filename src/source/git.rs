//! The specs from a git repository (gix, pure Rust): `run --specs URL
//! --git-ref main`. Each poll fetches into a bare clone kept in a cache
//! directory, resolves the ref, and reads every `*.yaml`/`*.yml` file of
//! that commit straight from the object database (no working tree). The
//! caller validates the whole commit and switches to it only when all of it
//! is valid.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Why the repository could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git {url}: {message}")]
pub struct Error {
    pub url: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One commit's policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    /// `(path in the repository, content)`, in path order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// A repository to poll.
#[derive(Debug, Clone)]
pub struct GitSource {
    pub url: String,
    pub reference: String,
    /// Where the bare clone is kept.
    pub cache: PathBuf,
}

/// Whether `--specs` names a repository rather than a path.
pub fn is_url(spec: &Path) -> bool {
    let s = spec.to_string_lossy();
    ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|p| s.starts_with(p))
        || (s.contains('@') && s.contains(':') && !s.starts_with('/'))
}

/// The secret a URL holds, if any: a password, or over http(s) a lone
/// user name, since hosts such as GitHub take a token there
/// (`https://TOKEN@github.com/org/repo.git`). `git@host:path` and
/// `ssh://git@host/path` name a user, never a secret.
fn secret(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    match userinfo.split_once(':') {
        Some((_, password)) => Some(password),
        None if scheme.starts_with("http") => Some(userinfo),
        None => None,
    }
    .filter(|s| !s.is_empty())
}

/// The environment variable that gives a token for an https repository,
/// so that the token need not be in the URL, nor in an ECS task
/// definition's command: ECS can inject it from Secrets Manager.
pub const TOKEN_VARIABLE: &str = "STEVEDORE_GIT_TOKEN";
/// The user name sent with that token (default [`TOKEN_USERNAME`]).
pub const USERNAME_VARIABLE: &str = "STEVEDORE_GIT_USERNAME";
/// GitHub's user name for a token; GitLab takes any name with a personal
/// access token.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// `url` with `username:token` as its credentials. The URL must be https
/// (a token is never sent in clear), have no credentials of its own, and
/// the token no character that would end the credentials early.
pub fn with_token(url: &str, username: &str, token: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "{TOKEN_VARIABLE} is set, but `{}` is not an https URL",
            redacted(url)
        ));
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(format!(
            "{TOKEN_VARIABLE} is set, but `{}` has credentials already",
            redacted(url)
        ));
    }
    if token.is_empty() || token.contains(['@', ':', '/', '?', '#', '%', ' ']) {
        return Err(format!(
            "{TOKEN_VARIABLE} is empty or holds a character not allowed in a URL's credentials"
        ));
    }
    Ok(format!("https://{username}:{token}@{rest}"))
}

/// The URL as it may be shown in logs and errors: its secret replaced by
/// `***`.
pub fn redacted(url: &str) -> String {
    match secret(url) {
        Some(secret) => {
            // The secret's place in the URL (the same text may come earlier).
            let start = secret.as_ptr() as usize - url.as_ptr() as usize;
            format!("{}***{}", &url[..start], &url[start + secret.len()..])
        }
        None => url.to_owned(),
    }
}

/// An error with its causes, as `outer: inner: innermost` (gix reports
/// the reason a handshake failed only in a source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl GitSource {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        let mut message = message.to_string();
        // gix's and reqwest's messages may quote the URL too.
        if let Some(secret) = secret(&self.url) {
            message = message.replace(secret, "***");
        }
        Error {
            url: redacted(&self.url),
            message,
        }
    }

    fn failed(&self, error: impl std::error::Error) -> Error {
        let mut text = with_causes(&error);
        // What an operator can do about the two failures a private
        // repository meets first.
        if text.contains("Failed to obtain credentials") {
            text.push_str(&format!(
                " (the repository asks for credentials: set {TOKEN_VARIABLE}, or put a token in the URL)"
            ));
        } else if text.contains("invalid peer certificate") {
            text.push_str(
                " (the server's certificate is not trusted: add its CA to SSL_CERT_FILE)",
            );
        }
        self.error(text)
    }

    /// Fetches, and reads the policy files of the ref's commit.
    pub fn fetch(&self) -> Result<Commit> {
        let interrupt = AtomicBool::new(false);
        // A controller never asks for credentials on a terminal: they come
        // in the URL or from a configured credential helper.
        let options = gix::open::Options::default()
            .config_overrides(["gitoxide.credentials.terminalPrompt=false"]);
        let repo = if self.cache.join("HEAD").exists() {
            gix::open_opts(&self.cache, options).map_err(|e| self.failed(e))?
        } else {
            std::fs::create_dir_all(&self.cache).map_err(|e| self.failed(e))?;
            gix::ThreadSafeRepository::init_opts(
                &self.cache,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                options,
            )
            .map_err(|e| self.failed(e))?
            .to_thread_local()
        };
        // An anonymous remote, so that the URL, which may hold a token, is
        // never written to the clone's configuration. Branches and tags
        // land under their own names, as in a bare clone.
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| self.failed(e))?
            .with_refspecs(
                ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                gix::remote::Direction::Fetch,
            )
            .map_err(|e| self.failed(e))?;
        remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| self.failed(e))?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.failed(e))?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| self.failed(e))?;
        let mut reference = [
            format!("refs/heads/{}", self.reference),
            format!("refs/tags/{}", self.reference),
        ]
        .iter()
        .find_map(|name| repo.find_reference(name.as_str()).ok())
        .ok_or_else(|| self.error(format!("no ref `{}`", self.reference)))?;
        let commit = reference.peel_to_commit().map_err(|e| self.failed(e))?;
        let tree = commit.tree().map_err(|e| self.failed(e))?;
        let mut recorder = gix::traverse::tree::Recorder::default();
        tree.traverse()
            .breadthfirst(&mut recorder)
            .map_err(|e| self.failed(e))?;
        let mut files = vec![];
        for entry in recorder.records {
            let path = entry.filepath.to_string();
            if !entry.mode.is_blob() || !(path.ends_with(".yaml") || path.ends_with(".yml")) {
                continue;
            }
            let object = repo.find_object(entry.oid).map_err(|e| self.failed(e))?;
            files.push((path, object.data.clone()));
        }
        files.sort();
        Ok(Commit {
            id: commit.id.to_string(),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{redacted, with_token};

    #[test]
    fn a_token_from_the_environment_goes_into_an_https_url_only() {
        assert_eq!(
            with_token("https://github.com/ops/p.git", "x-access-token", "ghp_1").unwrap(),
            "https://x-access-token:ghp_1@github.com/ops/p.git"
        );
        for url in [
            "http://git.example.com/p.git",
            "ssh://git@github.com/ops/p.git",
            "https://me:pw@github.com/ops/p.git",
        ] {
            let error = with_token(url, "x-access-token", "ghp_1").unwrap_err();
            assert!(!error.contains("pw"), "{error}");
        }
        assert!(with_token("https://github.com/p.git", "u", "a@b").is_err());
    }

    #[test]
    fn passwords_and_tokens_are_never_shown() {
        for (url, shown) in [
            (
                "https://x-access-token:ghp_s3cret@github.com/ops/policies.git",
                "https://x-access-token:***@github.com/ops/policies.git",
            ),
            (
                "https://ghp_s3cret@github.com/ops/policies.git",
                "https://***@github.com/ops/policies.git",
            ),
            (
                "https://github.com/ops/policies.git",
                "https://github.com/ops/policies.git",
            ),
            (
                "ssh://git@github.com/ops/policies.git",
                "ssh://git@github.com/ops/policies.git",
            ),
            (
                "git@github.com:ops/policies.git",
                "git@github.com:ops/policies.git",
            ),
            // The same text as user and password: the password is hidden.
            (
                "https://token:token@github.com/ops/policies.git",
                "https://token:***@github.com/ops/policies.git",
            ),
            // An `@` in the path is not a user.
            (
                "https://git.example.com/ops/a@b.git",
                "https://git.example.com/ops/a@b.git",
            ),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }
}
