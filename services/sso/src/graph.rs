//! Microsoft Graph, for the groups of a user whose ID token carried the groups-overage
//! indication instead of its groups: `GET /v1.0/me/transitiveMemberOf/microsoft.graph.group`
//! with the user's Azure access token, following `@odata.nextLink` pages (only on the
//! Graph origin, so the token never goes elsewhere), at most [`MAX_PAGES`] pages.

use std::time::Duration;

use serde::Deserialize;

/// At most this many pages (999 groups each) are read.
pub const MAX_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Microsoft Graph unavailable: {0}")]
    Unavailable(String),
    #[error("Microsoft Graph refused the request: HTTP {0}")]
    Refused(u16),
    #[error("Microsoft Graph sent a next page outside its origin")]
    ForeignNextLink,
    #[error("more than {MAX_PAGES} pages of groups")]
    TooManyPages,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<DirectoryObject>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryObject {
    id: String,
}

#[derive(Clone)]
pub struct Graph {
    base: String,
    http: reqwest::Client,
}

impl Graph {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The ids of every group the signed-in user belongs to (transitively).
    pub async fn member_groups(&self, access_token: &str) -> Result<Vec<String>, GraphError> {
        let origin = crate::settings::origin_of(&self.base);
        let mut url = format!(
            "{}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999",
            self.base
        );
        let mut groups = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .http
                .get(&url)
                .bearer_auth(access_token)
                .header("ConsistencyLevel", "eventual")
                .send()
                .await
                .map_err(|e| GraphError::Unavailable(e.to_string()))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(GraphError::Unavailable(format!("HTTP {status}")));
            }
            if !status.is_success() {
                return Err(GraphError::Refused(status.as_u16()));
            }
            let page: Page = response
                .json()
                .await
                .map_err(|e| GraphError::Unavailable(format!("bad body: {e}")))?;
            groups.extend(page.value.into_iter().map(|o| o.id));
            match page.next_link {
                None => return Ok(groups),
                Some(next) => {
                    if crate::settings::origin_of(&next) != origin {
                        return Err(GraphError::ForeignNextLink);
                    }
                    url = next;
                }
            }
        }
        Err(GraphError::TooManyPages)
    }
}
