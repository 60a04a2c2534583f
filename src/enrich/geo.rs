//! An IP address → country, region, city, ASN and organisation, from MaxMind DB files the admin
//! configures (GeoLite2 / GeoIP2 City and ASN, or any file of those shapes). Each file is read
//! whole into memory and checked completely at start, so that a damaged file stops the start
//! with its name instead of failing lookups one by one later.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{geoip2, Reader};
use serde::Serialize;

/// Largest database file read (GeoLite2-City is about 60 MB; a paid GeoIP2 City about 130 MB).
pub const MAX_MMDB_BYTES: u64 = 512 << 20;

/// Where an address is, as far as the configured files say. Absent parts are `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Geo {
    /// The country's English name.
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
    /// The first (largest) subdivision's English name: a state, region or province.
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// The organisation the AS is registered to.
    pub organization: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("[enrichment] {setting} = {path:?}: cannot read the file: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[enrichment] {setting} = {path:?}: the file has {size} bytes, more than the {MAX_MMDB_BYTES} a MaxMind DB file may have here")]
    TooLarge {
        setting: &'static str,
        path: PathBuf,
        size: u64,
    },
    #[error("[enrichment] {setting} = {path:?}: not a valid MaxMind DB (.mmdb) file: {message}")]
    Invalid {
        setting: &'static str,
        path: PathBuf,
        message: String,
    },
}

struct Database {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

impl Database {
    /// Reads and checks a file: its size first (nothing is read past the limit), then its
    /// metadata and search tree, then every record (`verify`).
    fn open(setting: &'static str, path: &Path) -> Result<Database, GeoError> {
        let read_error = |source| GeoError::Read {
            setting,
            path: path.to_path_buf(),
            source,
        };
        let invalid = |e: maxminddb::MaxMindDbError| GeoError::Invalid {
            setting,
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_MMDB_BYTES {
            return Err(GeoError::TooLarge {
                setting,
                path: path.to_path_buf(),
                size,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        {
            use std::io::Read;
            let file = std::fs::File::open(path).map_err(read_error)?;
            // bounded even if the file grows between the size check and the read
            file.take(MAX_MMDB_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(read_error)?;
        }
        if bytes.len() as u64 > MAX_MMDB_BYTES {
            return Err(GeoError::TooLarge {
                setting,
                path: path.to_path_buf(),
                size: bytes.len() as u64,
            });
        }
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        reader.verify().map_err(invalid)?;
        Ok(Database {
            reader,
            path: path.to_path_buf(),
        })
    }

    fn describe(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{} ({}, IPv{}, built {})",
            self.path.display(),
            m.database_type,
            m.ip_version,
            crate::time::format_micros(
                i64::try_from(m.build_epoch)
                    .unwrap_or(0)
                    .saturating_mul(crate::time::MICROS_PER_SEC)
            )
        )
    }
}

/// The configured databases; either may be absent.
pub struct GeoDatabases {
    city: Option<Database>,
    asn: Option<Database>,
}

impl GeoDatabases {
    /// Opens the files given; `None` when neither is.
    pub fn open(city: Option<&Path>, asn: Option<&Path>) -> Result<Option<GeoDatabases>, GeoError> {
        if city.is_none() && asn.is_none() {
            return Ok(None);
        }
        Ok(Some(GeoDatabases {
            city: city.map(|p| Database::open("city_mmdb", p)).transpose()?,
            asn: asn.map(|p| Database::open("asn_mmdb", p)).transpose()?,
        }))
    }

    /// The files in use, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.city
            .iter()
            .chain(self.asn.iter())
            .map(Database::describe)
            .collect()
    }

    /// What the files know of `ip`; `None` when they know nothing (a private address, one
    /// missing from the files, an IPv6 address in an IPv4-only file).
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let mut geo = Geo::default();
        if let Some(db) = &self.city {
            // a record the file cannot decode is treated as no record: the event is still shown
            if let Some(city) = db
                .reader
                .lookup(ip)
                .ok()
                .and_then(|r| r.decode::<geoip2::City>().ok().flatten())
            {
                let name = |n: &geoip2::Names| n.english.map(str::to_string);
                geo.country = name(&city.country.names);
                geo.country_code = city.country.iso_code.map(str::to_string);
                geo.region = city.subdivisions.first().and_then(|s| name(&s.names));
                geo.city = name(&city.city.names);
                geo.latitude = city.location.latitude;
                geo.longitude = city.location.longitude;
            }
        }
        if let Some(db) = &self.asn {
            if let Some(asn) = db
                .reader
                .lookup(ip)
                .ok()
                .and_then(|r| r.decode::<geoip2::Asn>().ok().flatten())
            {
                geo.asn = asn.autonomous_system_number;
                geo.organization = asn.autonomous_system_organization.map(str::to_string);
            }
        }
        (geo != Geo::default()).then_some(geo)
    }
}
