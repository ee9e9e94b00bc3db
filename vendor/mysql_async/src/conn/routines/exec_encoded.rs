// sqlcache patch (see vendor/README.md): COM_STMT_EXECUTE with parameters the
// caller encoded, so a proxy can forward the types its client declared
// (MYSQL_TYPE_BLOB, MYSQL_TYPE_DATE, MYSQL_TYPE_TINY, ...) instead of the ones
// `ComStmtExecuteRequestBuilder` derives from `Value` variants.

use futures_core::future::BoxFuture;
use futures_util::FutureExt;
use mysql_common::{
    constants::{Command, MAX_PAYLOAD_LEN},
    packets::ComStmtSendLongData,
};

use crate::{
    conn::MAX_STATEMENT_PARAMS, BinaryProtocol, Conn, DriverError, QueryResult, Statement,
};

use super::Routine;

/// The parameter part of a COM_STMT_EXECUTE, already encoded.
#[derive(Debug, Clone, Default)]
pub struct EncodedParams {
    /// How many parameters `bytes` describes; must equal the statement's.
    pub num_params: u16,
    /// Everything after the iteration count: the NULL bitmap, the
    /// new-params-bound flag, the types and the values, exactly as they go
    /// on the wire. Empty when the statement has no parameters.
    pub bytes: Vec<u8>,
    /// Values sent ahead with COM_STMT_SEND_LONG_DATA, by parameter index.
    pub long_data: Vec<(u16, Vec<u8>)>,
}

struct ExecEncodedRoutine<'a> {
    stmt: &'a Statement,
    params: &'a EncodedParams,
}

impl Routine<()> for ExecEncodedRoutine<'_> {
    fn call<'a>(self, conn: &'a mut Conn) -> BoxFuture<'a, crate::Result<()>>
    where
        Self: 'a,
    {
        async move {
            let Self { stmt, params } = self;
            if params.num_params as usize > MAX_STATEMENT_PARAMS {
                Err(DriverError::StmtParamsNumberExceedsLimit {
                    supplied: params.num_params as usize,
                })?
            }
            if stmt.num_params() != params.num_params {
                Err(DriverError::StmtParamsMismatch {
                    required: stmt.num_params(),
                    supplied: params.num_params as usize,
                })?
            }
            for (index, data) in &params.long_data {
                let mut chunks = data.chunks(MAX_PAYLOAD_LEN - 6).peekable();
                if chunks.peek().is_none() {
                    let com = ComStmtSendLongData::new(stmt.id(), *index, &[][..]);
                    conn.write_command(&com).await?;
                }
                for chunk in chunks {
                    let com = ComStmtSendLongData::new(stmt.id(), *index, chunk);
                    conn.write_command(&com).await?;
                }
            }
            let mut body = Vec::with_capacity(9 + params.bytes.len());
            body.extend_from_slice(&stmt.id().to_le_bytes());
            body.push(0); // flags: CURSOR_TYPE_NO_CURSOR
            body.extend_from_slice(&1u32.to_le_bytes()); // iteration count
            body.extend_from_slice(&params.bytes);
            conn.write_command_data(Command::COM_STMT_EXECUTE, body)
                .await?;
            conn.read_result_set::<BinaryProtocol>(true, Some(stmt))
                .await?;
            Ok(())
        }
        .boxed()
    }
}

impl Conn {
    /// Executes `stmt` with parameters the caller encoded (see
    /// [`EncodedParams`]) and returns its result like `exec_iter` does.
    pub fn exec_iter_encoded<'a: 's, 's>(
        &'a mut self,
        stmt: &'s Statement,
        params: &'s EncodedParams,
    ) -> crate::BoxFuture<'s, QueryResult<'a, 'static, BinaryProtocol>> {
        async move {
            self.routine(ExecEncodedRoutine { stmt, params }).await?;
            Ok(QueryResult::new(self))
        }
        .boxed()
    }
}
