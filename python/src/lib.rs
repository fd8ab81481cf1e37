//! `flagpost._native`: the Python extension module (PyO3) over
//! `flagpost-std`'s client API. It owns the two classes the Python package
//! `flagpost` subclasses — `Notifier` and `Listener` (`notifier.rs`,
//! `listener.rs`) — and the translation of Rust errors and bad
//! arguments into the package's typed exceptions (`flagpost._errors`), so
//! that nothing panics across the boundary.

#[cfg(feature = "bench")]
mod bench;
mod errors;
mod listener;
mod notifier;

use pyo3::prelude::*;

/// The native module; `flagpost/__init__.py` re-exports what callers use.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<notifier::PyNotifier>()?;
    m.add_class::<listener::PyListener>()?;
    #[cfg(feature = "bench")]
    m.add_class::<bench::RustLatency>()?;
    m.add("DEFAULT_BROKER", "127.0.0.1:16725")?;
    // the benchmark refuses to report figures of a debug build
    m.add("DEBUG_BUILD", cfg!(debug_assertions))?;
    Ok(())
}
