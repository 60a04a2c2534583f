//! `[request.until]`: the upper bound of a time window, which lets a first backfill be split
//! into windows walked concurrently; only where a window is a plain query parameter and the
//! cursor is a time.

use super::Validator;
use crate::connectors::definition::model::{CursorKind, HttpMethod, SinceSpec};
use crate::connectors::definition::raw::RawRequest;
use crate::connectors::definition::DefinitionError;
use crate::connectors::template::TemplateScope;

impl Validator<'_> {
    pub(super) fn until(
        &self,
        request: &RawRequest,
        cursor: CursorKind,
        config_names: &[&str],
    ) -> Result<Option<SinceSpec>, DefinitionError> {
        let Some(u) = &request.until else {
            return Ok(None);
        };
        let template = self.template(
            "request.until.template",
            &u.template,
            &TemplateScope {
                config: config_names,
                credentials: &[],
                time: true,
            },
        )?;
        if !template.uses_time() {
            return Err(self.err("request.until.template", "must contain `{time}`"));
        }
        if u.param.is_empty() || u.param == request.since.param {
            return Err(self.err(
                "request.until.param",
                "must name a query parameter other than request.since.param",
            ));
        }
        if request.method != HttpMethod::Get {
            return Err(self.err(
                "request.until",
                "a time window is sent as query parameters: it needs method = \"GET\"",
            ));
        }
        if cursor != CursorKind::Time {
            return Err(self.err(
                "request.until",
                "backfill windows need a `time` cursor (a `next_link` cursor's position is the vendor's link)",
            ));
        }
        Ok(Some(SinceSpec {
            param: u.param.clone(),
            template,
            format: u.format,
        }))
    }
}
