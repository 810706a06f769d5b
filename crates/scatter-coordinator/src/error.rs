//! Errors of the coordinator's API and how they map to HTTP.
//!
//! Policy: every error reply is an [`ErrorBody`] whose sentence says what happened and what
//! to do; internal details (SQL text) are logged, not sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scatter_proto::api::{ErrorBody, ErrorCode};

use crate::store::StoreError;

/// An API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The pack's shards cannot all be placed under the grid's durability rule and the
    /// caller's policy; the sentence says which limit bound it.
    #[error("{0}")]
    TooFewHosts(String),
    /// Not enough hosts answer right now, but enough would with those whose heartbeats are
    /// late (suspect): worth retrying in a few seconds.
    #[error("{0}, and {1} host(s) late with their heartbeats would make up the difference; retry in a few seconds")]
    HostsLate(String, usize),
    /// The request conflicts with the catalog's state.
    #[error("{0}")]
    Conflict(String),
    /// A conditional commit found the object changed.
    #[error("{0}")]
    Changed(String),
    /// The user's quota does not allow this.
    #[error("{0}")]
    Quota(String),
    /// The request body is larger than any request needs.
    #[error("{0}")]
    TooLarge(String),
    /// The request must wait for other work of the same user to finish.
    #[error("{0}")]
    Busy(String),
    /// The peer failed to authenticate too often lately.
    #[error("{0}")]
    Throttled(String),
    /// The request body arrived below the minimum rate.
    #[error("{0}")]
    TooSlow(String),
    /// Something failed inside the coordinator.
    #[error("the coordinator failed internally ({0}); see its log, then retry")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::MissingChunks(_)
            | StoreError::BadReference
            | StoreError::SessionClosed
            | StoreError::SessionAged { .. }
            | StoreError::SnapshotExists
            | StoreError::ShardTaken(_)
            | StoreError::ShardLeaving(_)
            | StoreError::DeviceTaken => ApiError::Conflict(e.to_string()),
            StoreError::QuotaFull | StoreError::RecordsFull { .. } | StoreError::DelegatesRecordsFull { .. } => {
                ApiError::Quota(e.to_string())
            }
            StoreError::Busy | StoreError::TooManySessions => ApiError::Busy(e.to_string()),
            StoreError::Changed => ApiError::Changed(e.to_string()),
            StoreError::NameTaken
            | StoreError::AccountDisabled
            | StoreError::OtherKeys
            | StoreError::NotOwnersKeys
            | StoreError::NotOwner
            | StoreError::NotYourSession
            | StoreError::NotPlanned
            | StoreError::Locked { .. } => ApiError::Forbidden(e.to_string()),
            e => {
                tracing::error!(error = %e, "catalog error");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub(crate) fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::TooFewHosts(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooFewHosts),
            ApiError::HostsLate(..) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::HostsLate),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::Changed(_) => (StatusCode::PRECONDITION_FAILED, ErrorCode::Changed),
            ApiError::Busy(_) => (StatusCode::LOCKED, ErrorCode::Busy),
            ApiError::Quota(_) => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Quota),
            ApiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::Throttled),
            ApiError::TooSlow(_) => (StatusCode::REQUEST_TIMEOUT, ErrorCode::TooSlow),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        (status, Json(ErrorBody { code, error: self.to_string() })).into_response()
    }
}
