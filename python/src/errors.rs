//! ibex's errors as the Python exceptions of `ibex.errors`.
//!
//! The exception classes are defined in Python (so that `DocumentNotFoundError` can also be a
//! `KeyError` and `InvalidInputError` a `ValueError`); this module picks the class for an error
//! and raises it with ibex's message.

use ibex::embedder::EmbedderError;
use ibex::indexer::IndexError;
use ibex::search::SearchError;
use ibex::IbexError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// The `ibex.errors` class for an error.
fn class_name(error: &IbexError) -> &'static str {
    fn index(e: &IndexError) -> &'static str {
        match e {
            IndexError::NotAnIndex { .. } | IndexError::UnknownIndex { .. } => "IndexNotFoundError",
            IndexError::ModelMismatch { .. } => "ModelMismatchError",
            IndexError::Locked { .. } => "IndexLockedError",
            IndexError::MalformedLine { .. }
            | IndexError::MissingText { .. }
            | IndexError::NotUtf8 { .. }
            | IndexError::UnsupportedCorpus { .. }
            | IndexError::AlreadyExists { .. }
            | IndexError::WrongDimension { .. }
            | IndexError::InvalidEmbedding { .. }
            | IndexError::InvalidChunking(_)
            | IndexError::InvalidName(_) => "InvalidInputError",
            IndexError::Closed { .. } | IndexError::WriteAbandoned { .. } => "IndexClosedError",
            IndexError::Embedder(e) => embedder(e),
            _ => "IbexError",
        }
    }
    fn embedder(e: &EmbedderError) -> &'static str {
        match e {
            EmbedderError::UnknownModel(_)
            | EmbedderError::MissingModelFile { .. }
            | EmbedderError::UnsupportedArchitecture { .. }
            | EmbedderError::Device(_) => "InvalidInputError",
            _ => "IbexError",
        }
    }
    match error {
        IbexError::Index(e) => index(e),
        IbexError::Embedder(e) => embedder(e),
        IbexError::Search(SearchError::Index(e)) => index(e),
        IbexError::Search(
            SearchError::UnknownMode(_)
            | SearchError::InvalidFilter(_)
            | SearchError::InvalidRequest(_),
        ) => "InvalidInputError",
        IbexError::Usage(_) => "InvalidInputError",
        _ => "IbexError",
    }
}

/// The Python exception for `error`: the `ibex.errors` class it belongs to, with its message.
pub fn to_py(error: impl Into<IbexError>) -> PyErr {
    let error = error.into();
    raise(class_name(&error), error.to_string())
}

/// The `ibex.errors` exception `name` with `message`.
pub fn raise(name: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import("ibex.errors")
            .and_then(|module| module.getattr(name))
            .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, message),
            // Only when `ibex._native` is imported without its package.
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

/// An error of the caller's input, raised as `ibex.errors.InvalidInputError`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    to_py(IbexError::Usage(message.into()))
}
