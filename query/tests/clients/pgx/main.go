// pgx_run: runs statements through pgx v5 (the driver of Grafana's PostgreSQL data source) and
// prints each result as one JSON line, for query's `serve` tests.
//
// Usage: pgx_run CONNECTION_URL < statements.json   (a JSON array of SQL strings)
// Output, one line per statement: {"columns":[...],"rows":[[...],...]} or
// {"error":{"code":"SQLSTATE","message":"..."}}, each with "ms", the statement's time from
// sending it to its last row or error. Values: numbers as numbers, times as
// milliseconds since the epoch, text as text, NULL as null.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type result struct {
	Columns []string           `json:"columns,omitempty"`
	Rows    [][]any            `json:"rows,omitempty"`
	Error   *map[string]string `json:"error,omitempty"`
	Ms      int64              `json:"ms"`
}

func value(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.UnixMilli()
	case []byte:
		return string(t)
	default:
		return t
	}
}

func run(ctx context.Context, conn *pgx.Conn, sql string) result {
	rows, err := conn.Query(ctx, sql)
	if err == nil {
		out := result{Rows: [][]any{}}
		for _, f := range rows.FieldDescriptions() {
			out.Columns = append(out.Columns, f.Name)
		}
		for rows.Next() {
			values, verr := rows.Values()
			if verr != nil {
				err = verr
				break
			}
			row := make([]any, len(values))
			for i, v := range values {
				row[i] = value(v)
			}
			out.Rows = append(out.Rows, row)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err == nil {
			return out
		}
	}
	failure := map[string]string{"code": "", "message": err.Error()}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		failure["code"] = pgErr.Code
		failure["message"] = pgErr.Message
	}
	return result{Error: &failure}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pgx_run CONNECTION_URL < statements.json")
		os.Exit(2)
	}
	var statements []string
	if err := json.NewDecoder(os.Stdin).Decode(&statements); err != nil {
		fmt.Fprintln(os.Stderr, "statements:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	out := json.NewEncoder(os.Stdout)
	for _, sql := range statements {
		started := time.Now()
		result := run(ctx, conn, sql)
		result.Ms = time.Since(started).Milliseconds()
		if err := out.Encode(result); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
