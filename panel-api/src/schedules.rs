//! Schedule runner (in progress).
