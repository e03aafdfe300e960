//! Policies: the `stevedore.io/v1alpha1` wire format, its validation, and
//! loading a GitOps directory of policy files.
//!
//! Loading runs three steps, as the Kubernetes API machinery does: decode
//! (`source`: bytes to wire types, every failure positioned), validate
//! (`convert`: each document's rules; `conflicts`: rules across documents),
//! and default (`convert`, once a document is known to be valid).

pub mod budget;
pub mod cluster;
pub mod conflicts;
pub mod convert;
pub mod diag;
pub mod glob;
pub mod policy;
pub mod quantity;
pub mod source;
pub mod v1alpha1;

use std::path::{Path, PathBuf};

pub use budget::Budget;
pub use cluster::Cluster;
pub use policy::Policy;

use diag::Diagnostic;

/// Why policies could not be loaded at all (as opposed to being invalid,
/// which is reported as diagnostics).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no policy files (*.yaml, *.yml) found")]
    NoPolicyFiles { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the controller runs on: the policies, the clusters'
/// DisruptionBudgets (at most one each), and where the clusters that are
/// not in the controller's own account and region live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specs {
    pub policies: Vec<Policy>,
    pub budgets: Vec<Budget>,
    pub clusters: Vec<Cluster>,
}

impl From<Vec<Policy>> for Specs {
    /// Policies alone, with no budget.
    fn from(policies: Vec<Policy>) -> Specs {
        Specs {
            policies,
            ..Specs::default()
        }
    }
}

impl Specs {
    /// The budget of a cluster, by name.
    pub fn budget(&self, cluster: &str) -> Option<&Budget> {
        self.budgets.iter().find(|b| b.cluster.name == cluster)
    }
}

/// The outcome of loading a set of policy files.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Policies that passed their own validation. When `diagnostics` has
    /// errors, the set as a whole must not be used.
    pub policies: Vec<Policy>,
    /// DisruptionBudgets that passed their own validation (same caveat).
    pub budgets: Vec<Budget>,
    /// Cluster documents that passed their own validation (same caveat).
    pub clusters: Vec<Cluster>,
    /// Sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// The files read, in order.
    pub files: Vec<String>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// The policies and budgets (meaningful only without errors).
    pub fn specs(&self) -> Specs {
        Specs {
            policies: self.policies.clone(),
            budgets: self.budgets.clone(),
            clusters: self.clusters.clone(),
        }
    }
}

/// Loads named files and, recursively, the `*.yaml` / `*.yml` files of
/// named directories (following symlinks, as git-sync swaps them; skipping
/// hidden entries such as `.git`).
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded> {
    Ok(load_sources(read_paths(paths)?))
}

/// The files [`load_paths`] would decode, `(name, bytes)`, read but not
/// decoded: what a reload compares to know a file is no longer being
/// written.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut sources = vec![];
    for path in paths {
        for file in policy_files(path)? {
            let bytes = read_limited(&file)?;
            sources.push((file.display().to_string(), bytes));
        }
    }
    Ok(sources)
}

/// The policy files under a path: the path itself if it is a file.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_owned(),
        },
        _ => Error::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = vec![];
    let walker = walkdir::WalkDir::new(path)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(|e| Error::Io {
            path: e.path().unwrap_or(path).to_owned(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        let is_yaml = entry
            .path()
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml");
        if entry.file_type().is_file() && is_yaml {
            files.push(entry.into_path());
        }
    }
    if files.is_empty() {
        return Err(Error::NoPolicyFiles {
            path: path.to_owned(),
        });
    }
    Ok(files)
}

/// Reads at most one byte past the limit, so a huge file costs nothing.
fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |e| Error::Io {
        path: path.to_owned(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = vec![];
    file.take(source::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Decodes, validates and defaults in-memory files `(name, bytes)`: the
/// pure core of [`load_paths`].
pub fn load_sources(sources: Vec<(String, Vec<u8>)>) -> Loaded {
    let mut loaded = Loaded::default();
    let (mut policy_names, mut budget_names, mut cluster_names) = (vec![], vec![], vec![]);
    for (name, bytes) in sources {
        loaded.files.push(name.clone());
        let Some(file) = source::decode(&name, &bytes, &mut loaded.diagnostics) else {
            continue;
        };
        for document in file.documents {
            let name = document.name();
            let named = (name.value.clone(), file.source.position(name.referenced));
            match document {
                source::Document::Policy(document) => {
                    policy_names.push(named);
                    let (policy, diagnostics) = convert::convert(&file.source, document);
                    loaded.diagnostics.extend(diagnostics);
                    loaded.policies.extend(policy);
                }
                source::Document::Budget(document) => {
                    budget_names.push(named);
                    let (budget, diagnostics) = convert::convert_budget(&file.source, document);
                    loaded.diagnostics.extend(diagnostics);
                    loaded.budgets.extend(budget);
                }
                source::Document::Cluster(document) => {
                    cluster_names.push(named);
                    let (cluster, diagnostics) = convert::convert_cluster(&file.source, document);
                    loaded.diagnostics.extend(diagnostics);
                    loaded.clusters.extend(cluster);
                }
            }
        }
    }
    loaded
        .diagnostics
        .extend(conflicts::unique_names(v1alpha1::KIND, &policy_names));
    loaded.diagnostics.extend(conflicts::unique_names(
        v1alpha1::BUDGET_KIND,
        &budget_names,
    ));
    loaded.diagnostics.extend(conflicts::unique_names(
        v1alpha1::CLUSTER_KIND,
        &cluster_names,
    ));
    loaded
        .diagnostics
        .extend(conflicts::one_budget_per_cluster(&loaded.budgets));
    loaded
        .diagnostics
        .extend(conflicts::one_location_per_cluster(&loaded.clusters));
    loaded
        .diagnostics
        .extend(conflicts::overlapping_targets(&loaded.policies));
    diag::sort(&mut loaded.diagnostics);
    loaded
}
