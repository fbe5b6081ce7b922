//! Remote API bodies (Wings → Panel, `/api/remote`): reference `wings-protocol.md` §4,
//! §6.1–§6.2. Owned by the daemon-protocol work.
