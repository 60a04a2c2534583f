//! TEMPORARY STUB (replaced by the objects branch)
#![allow(dead_code, unused_variables)]
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ObjectTarget {
    pub dir: Option<std::path::PathBuf>,
}
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}
pub struct ObjectStore;
impl ObjectStore {
    pub fn new(t: &ObjectTarget) -> Result<ObjectStore, String> {
        Err("archive targets are not built yet".into())
    }
    pub fn describe(&self) -> String {
        todo!()
    }
    pub async fn put(&self, k: &str, b: Vec<u8>) -> Result<(), String> {
        todo!()
    }
    pub async fn get(&self, k: &str, max: u64) -> Result<Vec<u8>, String> {
        todo!()
    }
    pub async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, String> {
        todo!()
    }
}
