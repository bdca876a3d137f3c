//! Snapshots over HTTP: take one (under the data directory, named by the server), list them,
//! download one as a tar stream, restore one as a new index, delete one.
//!
//! A snapshot holds exactly the commit that was current when it was taken, whatever writes run
//! meanwhile (see `ibex_indexer::snapshot`). The tar stream is produced while it is sent, so a
//! snapshot larger than memory downloads in constant memory.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ibex_indexer::SnapshotInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{blocking, catalog, ApiJson, ApiPath, IndexResponse};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// A snapshot of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotResponse {
    /// The snapshot's name (chosen by the server).
    pub snapshot: String,
    /// The index it was taken of.
    pub index: String,
    /// Generation of the commit it holds.
    pub generation: u64,
    /// Live documents of that commit.
    pub documents: usize,
    /// Live chunks of that commit.
    pub chunks: usize,
    /// Bytes of its files (hard links to the index's files use no space until the index moves
    /// on).
    pub bytes: u64,
    /// When it was taken, in seconds since the Unix epoch.
    pub created_unix: u64,
}

impl SnapshotResponse {
    fn new(index: &str, snapshot: String, info: SnapshotInfo) -> Self {
        SnapshotResponse {
            snapshot,
            index: index.to_string(),
            generation: info.generation,
            documents: info.documents,
            chunks: info.chunks,
            bytes: info.bytes,
            created_unix: info.created_unix,
        }
    }
}

/// The snapshots of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    /// Oldest first.
    pub snapshots: Vec<SnapshotResponse>,
}

/// Where to restore a snapshot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Name of the new index the snapshot becomes (it must not exist).
    pub into: String,
}

/// Takes a consistent snapshot of an index's last commit, while writes continue.
#[utoipa::path(post, path = "/v1/indexes/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path)),
    responses((status = 201, body = SnapshotResponse), (status = 404, body = ErrorBody),
        (status = 507, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_snapshot(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<SnapshotResponse>), ApiError> {
    let catalog = catalog(&state)?;
    let response = blocking(move || {
        let (snapshot, info) = catalog.create_snapshot(&name)?;
        Ok(SnapshotResponse::new(&name, snapshot, info))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// Lists an index's snapshots (kept after the index is deleted).
#[utoipa::path(get, path = "/v1/indexes/{name}/snapshots", tag = "snapshots",
    params(("name" = String, Path)),
    responses((status = 200, body = SnapshotList)),
    security(("bearer" = [])))]
pub async fn list_snapshots(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SnapshotList>, ApiError> {
    let catalog = catalog(&state)?;
    let snapshots = blocking(move || {
        Ok(catalog
            .list_snapshots(&name)?
            .into_iter()
            .map(|(snapshot, info)| SnapshotResponse::new(&name, snapshot, info))
            .collect())
    })
    .await?;
    Ok(Json(SnapshotList { snapshots }))
}

/// Downloads a snapshot as a tar archive of one directory, named after the snapshot, which
/// `ibex restore` (or any ibex opening it as an index) reads once unpacked.
#[utoipa::path(get, path = "/v1/indexes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, content_type = "application/x-tar", description = "The snapshot's files"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn download_snapshot(
    State(state): State<AppState>,
    ApiPath((name, snapshot)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let catalog = catalog(&state)?;
    let (dir, snapshot) =
        blocking(move || Ok((catalog.snapshot_path(&name, &snapshot)?, snapshot))).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let folder = snapshot.clone();
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK_BYTES),
        });
        builder.follow_symlinks(false);
        let written = builder
            .append_dir_all(&folder, &dir)
            .and_then(|()| builder.into_inner())
            .and_then(|mut writer| writer.flush());
        if let Err(e) = written {
            // The client sees a cut stream (the status line has gone out already).
            let _ = sender.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{snapshot}.tar\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Restores a snapshot as a new index, served at once.
#[utoipa::path(post, path = "/v1/indexes/{name}/snapshots/{snapshot}/restore", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    request_body = RestoreRequest,
    responses((status = 201, body = IndexResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restore_snapshot(
    State(state): State<AppState>,
    ApiPath((name, snapshot)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<IndexResponse>), ApiError> {
    let catalog = catalog(&state)?;
    let info = blocking(move || {
        Ok(catalog
            .restore_snapshot(&name, &snapshot, &request.into)?
            .info())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Deletes a snapshot.
#[utoipa::path(delete, path = "/v1/indexes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_snapshot(
    State(state): State<AppState>,
    ApiPath((name, snapshot)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let catalog = catalog(&state)?;
    blocking(move || Ok(catalog.delete_snapshot(&name, &snapshot)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bytes sent per chunk of the tar stream.
const CHUNK_BYTES: usize = 256 * 1024;

/// The tar writer's output, handed to the response body in chunks; the channel's bound makes a
/// slow client slow the archiving down instead of filling memory.
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}
