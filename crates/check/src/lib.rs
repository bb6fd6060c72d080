//! Placeholder: the invariant checker is being written.
