//! Where the policies come from: a directory (or files) watched for
//! changes ([`files`]), or a git repository fetched on a timer ([`git`]).

pub mod files;
pub mod git;
