//! The set of servers on this node and the `states.json` persistence (§6.11).

use super::Server;
use crate::events::State;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct Manager {
    servers: RwLock<IndexMap<String, Arc<Server>>>,
}

impl Manager {
    pub fn add(&self, s: Arc<Server>) {
        self.servers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(s.uuid.clone(), s);
    }

    pub fn get(&self, uuid: &str) -> Option<Arc<Server>> {
        self.servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(uuid)
            .cloned()
    }

    pub fn remove(&self, uuid: &str) -> Option<Arc<Server>> {
        self.servers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .shift_remove(uuid)
    }

    pub fn all(&self) -> Vec<Arc<Server>> {
        self.servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.servers.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `{"<uuid>":"<state>"}` of every server.
    pub fn states(&self) -> IndexMap<String, String> {
        self.all()
            .into_iter()
            .map(|s| (s.uuid.clone(), s.state().as_str().to_string()))
            .collect()
    }

    pub fn persist_states(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec(&self.states())?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }
}

pub fn read_states(path: &Path) -> HashMap<String, State> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    let raw: HashMap<String, String> = serde_json::from_slice(&bytes).unwrap_or_default();
    raw.into_iter()
        .filter_map(|(k, v)| State::parse(&v).map(|s| (k, s)))
        .collect()
}
