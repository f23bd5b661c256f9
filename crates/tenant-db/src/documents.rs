//! Queries of a tenant database's `files` and `documents` (the document service's).
//! Each takes a connection, so the caller decides the transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{documents, files, pending_uploads};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = files, check_for_backend(diesel::pg::Pg))]
pub struct FileRow {
    pub id: Uuid,
    pub md5_hash: String,
    pub sha256_hash: String,
    pub s3_path: String,
    pub file_size: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = documents, check_for_backend(diesel::pg::Pg))]
pub struct DocumentRow {
    pub id: Uuid,
    pub filename: String,
    pub mime_type: String,
    pub file_id: Uuid,
    pub user_id: Uuid,
    pub created_by: Uuid,
    pub processing_status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn file_by_md5(conn: &mut AsyncPgConnection, md5: &str) -> QueryResult<Option<FileRow>> {
    files::table
        .filter(files::md5_hash.eq(md5))
        .select(FileRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn file(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<FileRow>> {
    files::table
        .find(id)
        .select(FileRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts a file unless one with the same MD5 exists (the unique constraint decides
/// between concurrent uploads); `None` when another upload stored it first.
pub async fn insert_file(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    md5: &str,
    sha256: &str,
    s3_path: &str,
    size: i64,
) -> QueryResult<Option<FileRow>> {
    diesel::insert_into(files::table)
        .values((
            files::id.eq(id),
            files::md5_hash.eq(md5),
            files::sha256_hash.eq(sha256),
            files::s3_path.eq(s3_path),
            files::file_size.eq(size),
        ))
        .on_conflict(files::md5_hash)
        .do_nothing()
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub struct NewDocument<'a> {
    pub id: Uuid,
    pub filename: &'a str,
    pub mime_type: &'a str,
    pub file_id: Uuid,
    pub user_id: Uuid,
}

pub async fn insert_document(
    conn: &mut AsyncPgConnection,
    doc: NewDocument<'_>,
) -> QueryResult<DocumentRow> {
    diesel::insert_into(documents::table)
        .values((
            documents::id.eq(doc.id),
            documents::filename.eq(doc.filename),
            documents::mime_type.eq(doc.mime_type),
            documents::file_id.eq(doc.file_id),
            documents::user_id.eq(doc.user_id),
            documents::created_by.eq(doc.user_id),
        ))
        .returning(DocumentRow::as_returning())
        .get_result(conn)
        .await
}

/// A new document of a file stored before takes the file's processing result (the
/// file is processed once, when first stored).
pub async fn inherit_processing_status(
    conn: &mut AsyncPgConnection,
    document: Uuid,
    file: Uuid,
) -> QueryResult<DocumentRow> {
    diesel::update(documents::table.find(document))
        .set(
            documents::processing_status.eq(files::table
                .filter(files::id.eq(file))
                .select(files::processing_status)
                .single_value()
                .assume_not_null()),
        )
        .returning(DocumentRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn document(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DocumentRow>> {
    documents::table
        .find(id)
        .select(DocumentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// `%`, `_` and `\\` taken literally in a LIKE pattern.
pub fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// A page of documents, newest first, optionally whose filename contains `filter`
/// (case-insensitive, literal); and the total matching.
/// A page of documents, newest first, and how many match in all. One round trip: the
/// total rides on each row (`count(id) OVER ()`); only a page past the end, which has no
/// rows to carry it, costs a second query.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: Option<&str>,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<DocumentRow>, i64)> {
    use diesel::dsl::count;
    use diesel::expression_methods::WindowExpressionMethods;
    let pattern = filter.map(like_literal);
    // Built from diesel's own window expression (not an SQL literal) so the statement
    // stays in the connection's prepared-statement cache.
    let mut query = documents::table
        .select((DocumentRow::as_select(), count(documents::id).over()))
        .into_boxed();
    if let Some(pattern) = &pattern {
        query = query.filter(documents::filename.ilike(pattern.clone()));
    }
    let rows: Vec<(DocumentRow, i64)> = query
        .order((documents::created_at.desc(), documents::id.desc()))
        .offset(offset)
        .limit(limit)
        .load(conn)
        .await?;
    let total = match <[(DocumentRow, i64)]>::first(&rows) {
        Some((_, total)) => *total,
        None if offset == 0 => 0,
        None => {
            let mut count = documents::table.count().into_boxed();
            if let Some(pattern) = &pattern {
                count = count.filter(documents::filename.ilike(pattern.clone()));
            }
            count.get_result(conn).await?
        }
    };
    Ok((rows.into_iter().map(|(row, _)| row).collect(), total))
}

pub async fn delete_document(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    Ok(diesel::delete(documents::table.find(id))
        .execute(conn)
        .await?
        == 1)
}

/// Deletes the file if no document refers to it any more; returns it when deleted.
pub async fn delete_file_if_orphaned(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<FileRow>> {
    if !lock_file_for_delete(conn, id).await? {
        return Ok(None);
    }
    let referenced: bool = diesel::select(diesel::dsl::exists(
        documents::table.filter(documents::file_id.eq(id)),
    ))
    .get_result(conn)
    .await?;
    if referenced {
        return Ok(None);
    }
    diesel::delete(files::table.find(id))
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Changes a document's filename and/or MIME type (`None` keeps it).
pub async fn update_document(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    filename: Option<&str>,
    mime_type: Option<&str>,
) -> QueryResult<Option<DocumentRow>> {
    diesel::update(documents::table.find(id))
        .set((
            filename.map(|f| documents::filename.eq(f)),
            mime_type.map(|m| documents::mime_type.eq(m)),
            documents::updated_at.eq(diesel::dsl::now),
        ))
        .returning(DocumentRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// A page of files, newest first, and the total.
pub async fn file_page(
    conn: &mut AsyncPgConnection,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<FileRow>, i64)> {
    let rows = files::table
        .select(FileRow::as_select())
        .order((files::created_at.desc(), files::id.desc()))
        .offset(offset)
        .limit(limit)
        .load(conn)
        .await?;
    let total = files::table.count().get_result(conn).await?;
    Ok((rows, total))
}

/// Number of files and bytes stored.
pub async fn file_stats(conn: &mut AsyncPgConnection) -> QueryResult<(i64, i64)> {
    let count: i64 = files::table.count().get_result(conn).await?;
    let total: Option<i64> = files::table
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        >("sum(file_size)::bigint"))
        .first(conn)
        .await?;
    Ok((count, total.unwrap_or(0)))
}

/// How many documents refer to each of `file_ids` (files no document refers to are
/// absent): the per-file statistics of the files API.
pub async fn document_counts(
    conn: &mut AsyncPgConnection,
    file_ids: &[Uuid],
) -> QueryResult<std::collections::HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = documents::table
        .filter(documents::file_id.eq_any(file_ids))
        .group_by(documents::file_id)
        .select((documents::file_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The documents referring to a file.
pub async fn documents_of_file(
    conn: &mut AsyncPgConnection,
    file_id: Uuid,
) -> QueryResult<Vec<DocumentRow>> {
    documents::table
        .filter(documents::file_id.eq(file_id))
        .order(documents::created_at.asc())
        .select(DocumentRow::as_select())
        .load(conn)
        .await
}

/// Deletes a file row no document refers to: `None` when there is no such file,
/// `Some(Err(n))` when `n` documents still refer to it. Run it in a transaction (the
/// row is locked first, see [`lock_file_for_delete`]).
pub async fn delete_unreferenced_file(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<Result<FileRow, i64>>> {
    if !lock_file_for_delete(conn, id).await? {
        return Ok(None);
    }
    let referenced: i64 = documents::table
        .filter(documents::file_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    if referenced > 0 {
        return Ok(Some(Err(referenced)));
    }
    let deleted = diesel::delete(files::table.find(id))
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(Some(Ok(deleted)))
}

/// A multipart upload in flight (or left behind by a service that died).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pending_uploads, check_for_backend(diesel::pg::Pg))]
pub struct PendingUpload {
    pub s3_key: String,
    pub upload_id: String,
    pub started_at: DateTime<Utc>,
}

/// Records a multipart upload before its first part is sent.
pub async fn record_upload(
    conn: &mut AsyncPgConnection,
    s3_key: &str,
    upload_id: &str,
) -> QueryResult<()> {
    diesel::insert_into(pending_uploads::table)
        .values((
            pending_uploads::s3_key.eq(s3_key),
            pending_uploads::upload_id.eq(upload_id),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Forgets a multipart upload that was completed or aborted.
pub async fn forget_upload(conn: &mut AsyncPgConnection, s3_key: &str) -> QueryResult<()> {
    diesel::delete(pending_uploads::table.find(s3_key))
        .execute(conn)
        .await
        .map(drop)
}

/// Up to `limit` uploads started before `before`, oldest first.
pub async fn stale_uploads(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<PendingUpload>> {
    pending_uploads::table
        .filter(pending_uploads::started_at.lt(before))
        .order(pending_uploads::started_at.asc())
        .limit(limit)
        .select(PendingUpload::as_select())
        .load(conn)
        .await
}

/// Claims a stale upload for one sweeper: moves its start to now unless another
/// sweeper (another replica) did first. False when it was claimed or forgotten since.
pub async fn claim_upload(conn: &mut AsyncPgConnection, seen: &PendingUpload) -> QueryResult<bool> {
    diesel::update(
        pending_uploads::table
            .find(&seen.s3_key)
            .filter(pending_uploads::started_at.eq(seen.started_at)),
    )
    .set(pending_uploads::started_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Whether a File row names `s3_key` (the upload behind it completed and was recorded).
pub async fn file_with_key_exists(conn: &mut AsyncPgConnection, s3_key: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        files::table.filter(files::s3_path.eq(s3_key)),
    ))
    .get_result(conn)
    .await
}

/// Locks a file row before deciding to delete it (`FOR UPDATE`, until the transaction
/// ends): an upload making a Document on it holds [`lock_file_for_reuse`], so either
/// the upload commits first and the orphan check that follows (a new statement, so a
/// new snapshot) sees its Document, or the file is deleted first and the upload finds
/// it gone. False when there is no such file.
pub async fn lock_file_for_delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    files::table
        .find(id)
        .select(files::id)
        .for_update()
        .first::<Uuid>(conn)
        .await
        .optional()
        .map(|row| row.is_some())
}

/// Locks a file row an upload makes a Document on (`FOR SHARE`, until the transaction
/// ends), so it cannot be deleted under it; `None` when it is gone already.
pub async fn lock_file_for_reuse(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<FileRow>> {
    files::table
        .find(id)
        .select(FileRow::as_select())
        .for_share()
        .first(conn)
        .await
        .optional()
}
