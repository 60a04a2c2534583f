//! TEMPORARY STUB (replaced by the objects branch)
#![allow(dead_code, unused_variables)]
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ObjectTarget {
    pub dir: Option<std::path::PathBuf>,
}
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}
pub struct ObjectKey(String);
impl ObjectKey {
    pub fn parse(k: &str) -> Result<ObjectKey, String> {
        Ok(ObjectKey(k.into()))
    }
}
pub struct ObjectStore;
impl ObjectTarget {
    pub fn build(&self) -> Result<ObjectStore, String> {
        Err("archive targets are not built yet".into())
    }
}
impl ObjectStore {
    pub fn describe(&self) -> String {
        String::new()
    }
    pub async fn put(&self, k: &ObjectKey, b: Vec<u8>) -> Result<(), String> {
        Err(String::new())
    }
    pub async fn get(&self, k: &ObjectKey, max: u64) -> Result<Vec<u8>, String> {
        Err(String::new())
    }
    pub async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, String> {
        Err(String::new())
    }
}
