//! Writing the AgentFS part of the store: directories, whole files written once, and
//! append-only files (`events/<agent>.jsonl`) whose last chunk is kept in memory so an
//! append never rewrites a whole file.
//!
//! Every method runs inside the caller's transaction. After a failed transaction the
//! caller must call `forget`, because the cached inode numbers and tails may be stale.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use libsql::{Connection, Value, params_from_iter};

use crate::audit::error::AuditError;
use crate::audit::schema::{CHUNK_SIZE, DIR_MODE, FILE_MODE, ROOT_INO};

/// Rows per multi-row `INSERT INTO fs_data` statement.
const CHUNK_ROWS_PER_STATEMENT: usize = 64;
/// Most bytes of emptied append buffers kept for the next transaction. A saturated
/// stream appends a few hundred KiB per transaction; allocating and freeing that much
/// every transaction makes the allocator hand pages back to the kernel and fault them
/// in again. The bound keeps a burst (a 10 MB line) from staying resident.
const SPARE_BYTES: usize = 1 << 20;

#[derive(Debug)]
struct AppendState {
    ino: i64,
    size: i64,
    /// Index and bytes of the last, partial chunk (empty when the file ends on a boundary).
    tail_index: i64,
    tail: Vec<u8>,
}

/// Seconds and nanoseconds since the epoch, as `fs_inode` stores times.
pub fn now_parts() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

#[derive(Debug, Default)]
pub struct FsWriter {
    dirs: HashMap<String, i64>,
    appends: HashMap<String, AppendState>,
    /// Bytes appended in the current transaction, per path, in first-touch order.
    pending: Vec<(String, Vec<u8>)>,
    pending_index: HashMap<String, usize>,
    next_ino: Option<i64>,
    /// Emptied append buffers, at most `SPARE_BYTES` of capacity in all.
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Where a file's tail and its new bytes are joined before they are chunked.
    joined: Vec<u8>,
}

/// Splits `/a/b/c` into its parent `/a/b` and name `c`.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/')?;
    if name.is_empty() {
        return None;
    }
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

/// `a.json` → (`a`, `.json`); no extension → (`name`, ``).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    }
}

pub async fn lookup(conn: &Connection, parent: i64, name: &str) -> Result<Option<i64>, AuditError> {
    let mut rows = conn
        .query(
            "SELECT ino FROM fs_dentry WHERE parent_ino = ?1 AND name = ?2",
            (parent, name),
        )
        .await
        .map_err(AuditError::sql("look up a path"))?;
    match rows
        .next()
        .await
        .map_err(AuditError::sql("look up a path"))?
    {
        Some(row) => Ok(Some(
            row.get::<i64>(0)
                .map_err(AuditError::sql("look up a path"))?,
        )),
        None => Ok(None),
    }
}

/// Resolves an absolute path to its inode, if it exists.
pub async fn resolve(conn: &Connection, path: &str) -> Result<Option<i64>, AuditError> {
    let mut ino = ROOT_INO;
    for name in path.split('/').filter(|p| !p.is_empty()) {
        match lookup(conn, ino, name).await? {
            Some(next) => ino = next,
            None => return Ok(None),
        }
    }
    Ok(Some(ino))
}

impl FsWriter {
    /// Drops every cache; the next use reloads from the store.
    pub fn forget(&mut self) {
        self.dirs.clear();
        self.appends.clear();
        self.pending.clear();
        self.pending_index.clear();
        self.next_ino = None;
    }

    /// Call at the start of every transaction: another process may have added inodes.
    pub fn begin(&mut self) {
        self.next_ino = None;
    }

    /// Creates the root directory if the store is new.
    pub async fn ensure_root(&mut self, conn: &Connection) -> Result<(), AuditError> {
        let (secs, nsec) = now_parts();
        conn.execute(
            "INSERT OR IGNORE INTO fs_inode (ino, mode, nlink, uid, gid, size, atime, mtime, ctime, atime_nsec, mtime_nsec, ctime_nsec) \
             VALUES (?1, ?2, 1, 0, 0, 0, ?3, ?3, ?3, ?4, ?4, ?4)",
            (ROOT_INO, DIR_MODE, secs, nsec),
        )
        .await
        .map_err(AuditError::sql("create the root directory"))?;
        Ok(())
    }

    async fn alloc_ino(&mut self, conn: &Connection) -> Result<i64, AuditError> {
        let next = match self.next_ino {
            Some(next) => next,
            None => {
                let mut rows = conn
                    .query("SELECT COALESCE(MAX(ino), 1) FROM fs_inode", ())
                    .await
                    .map_err(AuditError::sql("allocate an inode"))?;
                let max: i64 = match rows
                    .next()
                    .await
                    .map_err(AuditError::sql("allocate an inode"))?
                {
                    Some(row) => row.get(0).map_err(AuditError::sql("allocate an inode"))?,
                    None => ROOT_INO,
                };
                max + 1
            }
        };
        self.next_ino = Some(next + 1);
        Ok(next)
    }

    async fn new_inode(
        &mut self,
        conn: &Connection,
        parent: i64,
        name: &str,
        mode: i64,
        size: i64,
    ) -> Result<i64, AuditError> {
        let ino = self.alloc_ino(conn).await?;
        let (secs, nsec) = now_parts();
        conn.execute(
            "INSERT INTO fs_inode (ino, mode, nlink, uid, gid, size, atime, mtime, ctime, atime_nsec, mtime_nsec, ctime_nsec) \
             VALUES (?1, ?2, 1, 0, 0, ?3, ?4, ?4, ?4, ?5, ?5, ?5)",
            (ino, mode, size, secs, nsec),
        )
        .await
        .map_err(AuditError::sql("create an inode"))?;
        conn.execute(
            "INSERT INTO fs_dentry (name, parent_ino, ino) VALUES (?1, ?2, ?3)",
            (name, parent, ino),
        )
        .await
        .map_err(AuditError::sql("create a directory entry"))?;
        Ok(ino)
    }

    /// `mkdir -p`: the inode of directory `path`, created with its parents if missing.
    pub async fn ensure_dir(&mut self, conn: &Connection, path: &str) -> Result<i64, AuditError> {
        if path == "/" || path.is_empty() {
            return Ok(ROOT_INO);
        }
        if let Some(ino) = self.dirs.get(path) {
            return Ok(*ino);
        }
        let mut ino = ROOT_INO;
        let mut current = String::new();
        for name in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(name);
            if let Some(cached) = self.dirs.get(&current) {
                ino = *cached;
                continue;
            }
            ino = match lookup(conn, ino, name).await? {
                Some(found) => found,
                None => Box::pin(self.new_inode(conn, ino, name, DIR_MODE, 0)).await?,
            };
            self.dirs.insert(current.clone(), ino);
        }
        Ok(ino)
    }

    /// Writes a new file once. Never replaces an existing one (history is append-only).
    /// Writes a new file once and returns the path it got. Never replaces an existing
    /// file (history is append-only): a taken name gets a `-2`, `-3`... suffix instead.
    pub async fn create_file(
        &mut self,
        conn: &Connection,
        path: &str,
        content: &[u8],
    ) -> Result<String, AuditError> {
        let (parent_path, name) = split_path(path).ok_or_else(|| AuditError::Malformed {
            detail: format!("bad path `{path}`"),
        })?;
        let parent = self.ensure_dir(conn, parent_path).await?;
        let mut name = name.to_owned();
        let mut attempt = 1;
        while lookup(conn, parent, &name).await?.is_some() {
            attempt += 1;
            let (stem, ext) = split_extension(path.rsplit('/').next().unwrap_or(path));
            name = format!("{stem}-{attempt}{ext}");
        }
        let ino = self
            .new_inode(conn, parent, &name, FILE_MODE, content.len() as i64)
            .await?;
        let chunks: Vec<(i64, &[u8])> = content
            .chunks(CHUNK_SIZE)
            .enumerate()
            .map(|(i, c)| (i as i64, c))
            .collect();
        insert_chunks(conn, ino, &chunks).await?;
        let parent_path = parent_path.trim_end_matches('/');
        Ok(format!("{parent_path}/{name}"))
    }

    /// Queues bytes to append to `path` (created on first use); written by `flush_appends`.
    /// The bytes queued for `path` in this transaction, to append to in place.
    pub fn append_buffer(&mut self, path: &str) -> &mut Vec<u8> {
        let i = match self.pending_index.get(path) {
            Some(i) => *i,
            None => {
                self.pending_index
                    .insert(path.to_owned(), self.pending.len());
                let buffer = self.spare.pop().unwrap_or_default();
                self.spare_bytes -= buffer.capacity();
                self.pending.push((path.to_owned(), buffer));
                self.pending.len() - 1
            }
        };
        &mut self.pending[i].1
    }

    async fn load_append(
        &mut self,
        conn: &Connection,
        path: &str,
    ) -> Result<AppendState, AuditError> {
        let (parent_path, name) = split_path(path).ok_or_else(|| AuditError::Malformed {
            detail: format!("bad path `{path}`"),
        })?;
        let parent = self.ensure_dir(conn, parent_path).await?;
        let Some(ino) = lookup(conn, parent, name).await? else {
            let ino = self.new_inode(conn, parent, name, FILE_MODE, 0).await?;
            return Ok(AppendState {
                ino,
                size: 0,
                tail_index: 0,
                tail: Vec::new(),
            });
        };
        let mut rows = conn
            .query("SELECT size FROM fs_inode WHERE ino = ?1", [ino])
            .await
            .map_err(AuditError::sql("read a file size"))?;
        let size: i64 = match rows
            .next()
            .await
            .map_err(AuditError::sql("read a file size"))?
        {
            Some(row) => row.get(0).map_err(AuditError::sql("read a file size"))?,
            None => 0,
        };
        let tail_index = size / CHUNK_SIZE as i64;
        let mut tail = Vec::new();
        if size % CHUNK_SIZE as i64 != 0 {
            let mut rows = conn
                .query(
                    "SELECT data FROM fs_data WHERE ino = ?1 AND chunk_index = ?2",
                    (ino, tail_index),
                )
                .await
                .map_err(AuditError::sql("read the last chunk of a file"))?;
            if let Some(row) = rows
                .next()
                .await
                .map_err(AuditError::sql("read the last chunk of a file"))?
            {
                tail = row
                    .get::<Vec<u8>>(0)
                    .map_err(AuditError::sql("read the last chunk of a file"))?;
            }
        }
        Ok(AppendState {
            ino,
            size,
            tail_index,
            tail,
        })
    }

    /// Writes every queued append: rewrites at most the last partial chunk of each file,
    /// inserts the new ones, and records the new size.
    pub async fn flush_appends(&mut self, conn: &Connection) -> Result<(), AuditError> {
        let mut pending = std::mem::take(&mut self.pending);
        self.pending_index.clear();
        let mut joined = std::mem::take(&mut self.joined);
        let result = self.write_appends(conn, &mut pending, &mut joined).await;
        // Empty (after a failure, the rest is dropped); kept for its capacity.
        pending.clear();
        self.pending = pending;
        if joined.capacity() <= SPARE_BYTES {
            self.joined = joined;
        }
        result
    }

    async fn write_appends(
        &mut self,
        conn: &Connection,
        pending: &mut Vec<(String, Vec<u8>)>,
        joined: &mut Vec<u8>,
    ) -> Result<(), AuditError> {
        let (secs, nsec) = now_parts();
        for (path, bytes) in pending.drain(..) {
            let mut state = match self.appends.remove(&path) {
                Some(state) => state,
                None => self.load_append(conn, &path).await?,
            };
            joined.clear();
            joined.extend_from_slice(&state.tail);
            joined.extend_from_slice(&bytes);
            let chunks: Vec<(i64, &[u8])> = joined
                .chunks(CHUNK_SIZE)
                .enumerate()
                .map(|(i, c)| (state.tail_index + i as i64, c))
                .collect();
            insert_chunks(conn, state.ino, &chunks).await?;
            state.size += bytes.len() as i64;
            let full = joined.len() / CHUNK_SIZE;
            state.tail_index += full as i64;
            state.tail.clear();
            state.tail.extend_from_slice(&joined[full * CHUNK_SIZE..]);
            conn.execute(
                "UPDATE fs_inode SET size = ?1, mtime = ?2, mtime_nsec = ?3 WHERE ino = ?4",
                (state.size, secs, nsec, state.ino),
            )
            .await
            .map_err(AuditError::sql("record a file size"))?;
            self.appends.insert(path, state);
            self.keep_spare(bytes);
        }
        Ok(())
    }

    /// Keeps an emptied append buffer for reuse while the spare budget allows.
    fn keep_spare(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 0 && self.spare_bytes + buffer.capacity() <= SPARE_BYTES {
            buffer.clear();
            self.spare_bytes += buffer.capacity();
            self.spare.push(buffer);
        }
    }
}

/// Inserts (or, for a file's last partial chunk, replaces) chunks with multi-row inserts.
async fn insert_chunks(
    conn: &Connection,
    ino: i64,
    chunks: &[(i64, &[u8])],
) -> Result<(), AuditError> {
    for group in chunks.chunks(CHUNK_ROWS_PER_STATEMENT) {
        let mut sql =
            String::from("INSERT OR REPLACE INTO fs_data (ino, chunk_index, data) VALUES ");
        let mut values = Vec::with_capacity(group.len() * 3);
        for (i, (index, data)) in group.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?)");
            values.push(Value::Integer(ino));
            values.push(Value::Integer(*index));
            values.push(Value::Blob(data.to_vec()));
        }
        conn.execute(&sql, params_from_iter(values))
            .await
            .map_err(AuditError::sql("write file chunks"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(split_path("/runs/s/a.json"), Some(("/runs/s", "a.json")));
        assert_eq!(split_path("/runs"), Some(("/", "runs")));
        assert_eq!(split_path("/"), None);
        assert_eq!(split_extension("001-plan.json"), ("001-plan", ".json"));
        assert_eq!(split_extension("notes"), ("notes", ""));
    }

    /// Appends across transactions land intact (tails that end mid-chunk, a file
    /// touched in only some transactions, one append larger than the spare budget),
    /// and emptied buffers are kept for reuse only up to that budget.
    #[tokio::test]
    async fn appends_across_transactions_reuse_buffers_within_the_budget() {
        use crate::audit::reader::read_inode;
        use crate::audit::target::{AuditTarget, open_for_writing};

        let dir = tempfile::tempdir().unwrap();
        let store = open_for_writing(&AuditTarget::Local(dir.path().join("audit.db")))
            .await
            .unwrap();
        let conn = &store.conn;
        let mut fs = FsWriter::default();
        fs.ensure_root(conn).await.unwrap();
        let (a, b) = ("/runs/r/events/a.jsonl", "/runs/r/events/b.jsonl");
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        let sizes = [10, CHUNK_SIZE + 7, 3 * CHUNK_SIZE, 2 * SPARE_BYTES, 5];
        for (round, size) in sizes.into_iter().enumerate() {
            conn.execute("BEGIN IMMEDIATE", ()).await.unwrap();
            fs.begin();
            let bytes: Vec<u8> = (0..size).map(|i| b'a' + ((i + round) % 26) as u8).collect();
            fs.append_buffer(a).extend_from_slice(&bytes);
            expected_a.extend_from_slice(&bytes);
            if round % 2 == 0 {
                fs.append_buffer(b)
                    .extend_from_slice(&bytes[..size.min(100)]);
                expected_b.extend_from_slice(&bytes[..size.min(100)]);
            }
            fs.flush_appends(conn).await.unwrap();
            conn.execute("COMMIT", ()).await.unwrap();
            assert!(
                fs.spare_bytes <= SPARE_BYTES,
                "round {round}: {}",
                fs.spare_bytes
            );
            assert_eq!(
                fs.spare_bytes,
                fs.spare.iter().map(Vec::capacity).sum::<usize>()
            );
        }
        assert!(!fs.spare.is_empty(), "small buffers are kept");
        for (path, expected) in [(a, expected_a), (b, expected_b)] {
            let ino = resolve(conn, path).await.unwrap().unwrap();
            let stored = read_inode(conn, ino).await.unwrap();
            assert_eq!(stored.len(), expected.len(), "{path}");
            assert!(stored == expected, "{path} differs");
        }
    }
}
