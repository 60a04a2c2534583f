//! `[pagination]`: the flat table serde reads checked into one `Pagination` variant, each kind
//! requiring its own keys and refusing the others'.

use super::Validator;
use crate::connectors::definition::model::{OffsetUnit, Pagination};
use crate::connectors::definition::raw::{PaginationKind, RawPagination};
use crate::connectors::definition::DefinitionError;

impl Validator<'_> {
    pub(super) fn pagination(&self, raw: RawPagination) -> Result<Pagination, DefinitionError> {
        match raw.kind {
            PaginationKind::BodyCursor => Ok(Pagination::BodyCursor {
                path: self.path(
                    "pagination.path",
                    &raw.path.ok_or_else(|| {
                        self.err("pagination.path", "is required for kind body_cursor")
                    })?,
                )?,
                param: raw.param.ok_or_else(|| {
                    self.err("pagination.param", "is required for kind body_cursor")
                })?,
            }),
            PaginationKind::Offset => {
                if raw.path.is_some() {
                    return Err(self.err("pagination.path", "does not apply to kind offset"));
                }
                let param = raw
                    .param
                    .ok_or_else(|| self.err("pagination.param", "is required for kind offset"))?;
                if param.is_empty() {
                    return Err(self.err("pagination.param", "must name a query parameter"));
                }
                let unit = raw.unit.unwrap_or(OffsetUnit::Records);
                let start = raw.start.unwrap_or(match unit {
                    OffsetUnit::Records => 0,
                    OffsetUnit::Pages => 1,
                });
                Ok(Pagination::Offset { param, unit, start })
            }
            PaginationKind::LastRecord => {
                let path = raw.path.ok_or_else(|| {
                    self.err("pagination.path", "is required for kind last_record")
                })?;
                let param = raw.param.ok_or_else(|| {
                    self.err("pagination.param", "is required for kind last_record")
                })?;
                let path = self.path("pagination.path", &path)?;
                if param.is_empty() {
                    return Err(self.err("pagination.param", "must name a query parameter"));
                }
                Ok(Pagination::LastRecord { path, param })
            }
            PaginationKind::NextUrlInBody => {
                if raw.param.is_some() {
                    return Err(self.err(
                        "pagination.param",
                        "does not apply to kind next_url_in_body (the URL is followed as is)",
                    ));
                }
                let path = raw.path.ok_or_else(|| {
                    self.err("pagination.path", "is required for kind next_url_in_body")
                })?;
                let path = self.path("pagination.path", &path)?;
                Ok(Pagination::NextUrlInBody { path })
            }
            kind => {
                if raw.path.is_some() || raw.param.is_some() {
                    return Err(self.err(
                        "pagination",
                        format!("`path` and `param` apply only to kind body_cursor, not {kind:?}"),
                    ));
                }
                Ok(if kind == PaginationKind::LinkHeader {
                    Pagination::LinkHeader
                } else {
                    Pagination::None
                })
            }
        }
    }
}
