package mysql

import (
	"errors"

	gomysql "github.com/go-sql-driver/mysql"
)

// errorNumber is the server's error number inside err, or 0.
func errorNumber(err error) uint16 {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// dataErrors are server errors that mean "this value or row", not "this
// connection": running the same statement again fails the same way.
var dataErrors = map[uint16]bool{
	1048: true, // column cannot be null
	1062: true, // duplicate entry (a unique secondary index)
	1264: true, // out of range
	1265: true, // data truncated
	1292: true, // incorrect datetime value
	1366: true, // incorrect value
	1365: true, // division by 0: apply's upsert guard, a unique value held by another row
	1406: true, // data too long
	1451: true, // a foreign key refuses the delete (checks are off, but a user may turn them on)
	1452: true, // a foreign key refuses the row
	1690: true, // value out of range
	3140: true, // invalid JSON (MySQL)
	3819: true, // check constraint (MySQL)
	4025: true, // check constraint (MariaDB), e.g. json_valid
}

// IsDataError reports whether the target refused a value or a row.
func IsDataError(err error) bool { return dataErrors[errorNumber(err)] }

// IsDuplicate reports whether a unique index refused a row, directly (1062)
// or through the upsert guard (1365, see apply.UpsertTail).
func IsDuplicate(err error) bool {
	n := errorNumber(err)
	return n == 1062 || n == 1365
}

// IsDuplicateEntry reports a unique index refusing a value twice (1062),
// also when an index is being built over rows that hold it twice.
func IsDuplicateEntry(err error) bool { return errorNumber(err) == 1062 }

// IsTransient reports a deadlock or lock wait timeout: the server rolled the
// transaction back and running it again can succeed.
func IsTransient(err error) bool {
	n := errorNumber(err)
	return n == 1213 || n == 1205
}

// IsOrderConflict reports an error that applying the same changes in
// another order can avoid: a unique or foreign key refusing an intermediate
// state (1365 is the apply package's guard against an upsert meeting a
// unique value held by another row), or a deadlock. Any other error (a lost
// connection, a COMMIT whose outcome is unknown) must not be answered by
// writing the batch again.
func IsOrderConflict(err error) bool {
	switch errorNumber(err) {
	case 1062, 1365, 1451, 1452, 1213:
		return true
	}
	return false
}

// IsUpsertGuard reports the error of apply's upsert guard: an upsert met a
// unique value held by a row with another key (see apply.UpsertTail).
func IsUpsertGuard(err error) bool { return errorNumber(err) == 1365 }

// ExplainUpsertGuard says in words what the upsert guard's error means (the
// server reports it as "Division by 0"); other errors are returned as they
// are. The server's error stays wrapped (not in the message: it would only
// mislead), for IsDataError and the like.
func ExplainUpsertGuard(err error) error {
	if !IsUpsertGuard(err) {
		return err
	}
	return &upsertGuardError{err}
}

type upsertGuardError struct{ err error }

func (e *upsertGuardError) Error() string {
	return "a unique index of the target holds a value of the row in another row, which sluice does not overwrite"
}
func (e *upsertGuardError) Unwrap() error { return e.err }

// serverStates are server errors about the server's state, not the
// statement: they pass (a failover ends, connections free up).
var serverStates = map[uint16]bool{
	1040: true, // too many connections
	1053: true, // server shutdown in progress
	1152: true, // aborted connection
	1158: true, // network read error
	1159: true, // network read timeout
	1160: true, // network write error
	1161: true, // network write timeout
	1205: true, // lock wait timeout
	1213: true, // deadlock
	1290: true, // --read-only (a failover in progress)
	1317: true, // query interrupted (KILL QUERY)
	1836: true, // read-only mode
	1927: true, // connection killed
	4031: true, // disconnected for inactivity
}

// IsStatementRefused reports a server error about the statement itself (an
// unknown table or column, a missing privilege): running it again fails the
// same way until someone changes the target.
func IsStatementRefused(err error) bool {
	n := errorNumber(err)
	return n != 0 && !serverStates[n] && !dataErrors[n]
}

// definitionErrors are a CREATE TABLE's errors about the table it defines:
// its row, columns, keys, types, defaults or names.
var definitionErrors = map[uint16]bool{
	1059: true, // identifier too long
	1060: true, // duplicate column name (names that differ only in case)
	1061: true, // duplicate key name
	1064: true, // syntax error (a type set in the mapping)
	1067: true, // invalid default value
	1069: true, // too many keys
	1070: true, // too many key parts
	1071: true, // key too long
	1074: true, // column length too big
	1075: true, // AUTO_INCREMENT column not a key
	1089: true, // incorrect prefix key
	1101: true, // BLOB/TEXT column cannot have a default
	1103: true, // incorrect table name
	1115: true, // unknown character set
	1117: true, // too many columns
	1118: true, // row size too large
	1166: true, // incorrect column name
	1170: true, // BLOB/TEXT column in a key without a length
	1273: true, // unknown collation
	1291: true, // duplicate value in an ENUM or SET
	1300: true, // invalid character string (a name cut inside a character)
	3750: true, // MySQL's sql_require_primary_key
}

// IsDefinitionRefused reports a CREATE TABLE refused for what it defines,
// not for who runs it or the server's state.
func IsDefinitionRefused(err error) bool { return definitionErrors[errorNumber(err)] }

// IsRowTooLarge reports InnoDB's row size limit (about 8,126 bytes kept in
// the page for 16 KiB pages).
func IsRowTooLarge(err error) bool { return errorNumber(err) == 1118 }
