//! Typed errors of the library; the CLI reports them with context.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong outside a single bad record (those become dead letters).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job file or schema file is invalid.
    #[error("{file}: {key}: {reason}")]
    Config {
        /// The file that holds the problem.
        file: PathBuf,
        /// The dotted key (or field) that is wrong.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A Parquet or Arrow operation failed.
    #[error("{path}: {reason}")]
    Parquet {
        /// The file involved.
        path: PathBuf,
        /// The underlying error message.
        reason: String,
    },
    /// A replay buffer (segment or manifest) is damaged or does not belong to the job.
    #[error("{path}: {reason}")]
    Replay {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A drift reference profile is damaged or does not fit the job.
    #[error("{path}: {reason}")]
    Profile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model registry or version file is damaged or refused.
    #[error("{path}: {reason}")]
    Registry {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A Kafka client operation failed (connecting, metadata, producing, committing).
    #[error("kafka {context}: {reason}")]
    Kafka {
        /// What was being done, naming the brokers, topic or partition.
        context: String,
        /// librdkafka's message.
        reason: String,
    },
    /// A path where tidemark keeps its own files is not its to change (a symbolic link, or a
    /// directory it must not write into).
    #[error("{path}: {reason}")]
    Confined {
        /// The path refused.
        path: PathBuf,
        /// Why tidemark will not touch it.
        reason: String,
    },
    /// A source refused everything it read: its schema or format does not fit its data.
    #[error("sources.{stream}: {reason}")]
    AllRefused {
        /// The stream whose source it is.
        stream: String,
        /// What was read and refused, with the first reasons.
        reason: String,
    },
    /// The timely runtime failed (a worker panicked or could not start).
    #[error("runtime: {0}")]
    Runtime(String),
}

impl Error {
    /// Builds a profile error.
    pub fn profile(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Profile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Builds a configuration error.
    pub fn config(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Wraps an IO error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a registry error.
    pub fn registry(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Registry {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Builds a replay-buffer error.
    pub fn replay(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Replay {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Builds a Kafka error.
    pub fn kafka(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Kafka {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// Wraps a Parquet/Arrow error with the path it concerns.
    pub fn parquet(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::Parquet {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
