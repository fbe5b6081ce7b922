//! Wings HTTP API bodies (Panel → Wings and browser → Wings): reference
//! `wings-protocol.md` §1–§3, §5. Owned by the daemon-protocol work.
