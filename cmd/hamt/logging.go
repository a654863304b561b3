package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The global logging flags: records go to standard error, as text (slog's key=value lines, every
// value that holds a space, a quote or a control character quoted, so one record is one line
// whatever a client sends) or as JSON, one object per line. Standard output is never logged to,
// and an error still ends a run as one "hamt: " line on standard error, whatever the flags.
func (a *app) logFlags(pf *pflag.FlagSet) {
	pf.StringVar(&a.logLevel, "log-level", "info", "log records at this level and above to standard error: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log record format: text (key=value) or json (one object per line)")
}

// setupLog makes the run's logger from the flags; a value it does not know is a usage error.
func (a *app) setupLog() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil || strings.ContainsAny(a.logLevel, "+-") {
		return &usageError{fmt.Errorf("--log-level %s: want debug, info, warn or error", shorten(a.logLevel))}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return &usageError{fmt.Errorf("--log-format %s: want text or json", shorten(a.logFormat))}
	}
	return nil
}

// logger is the run's logger: the flags' once they are read, else text at info level.
func (a *app) logger() *slog.Logger {
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(a.stderr, nil))
	}
	return a.log
}

// notice tells the user what a long-running command is doing (serve's address, its stop): with
// --log-format text the plain line text, as before there were log flags; with json a record msg
// with attrs, so that standard error stays one JSON object per line. Either way only at info level
// or below.
func (a *app) notice(ctx context.Context, text, msg string, attrs ...slog.Attr) {
	log := a.logger()
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if a.logFormat == "json" {
		log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
		return
	}
	fmt.Fprintln(a.stderr, text)
}

// logRequests logs one record per request once it is answered: the client's address, the
// method, the path, the Range header asked for (when there was one), the status, the bytes of
// body sent, the time taken, and aborted=true for an answer cut off after its status was sent.
// A 5xx is logged at error level, an aborted answer at warn, the others at info.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: rw, status: http.StatusOK}
		aborted := true
		defer func() { // also when the handler aborts by panicking with http.ErrAbortHandler
			level := slog.LevelInfo
			switch {
			case aborted:
				level = slog.LevelWarn
			case sw.status >= 500:
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("client", r.RemoteAddr),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
			}
			if rng, ok := r.Header["Range"]; ok {
				attrs = append(attrs, slog.String("range", strings.Join(rng, ", ")))
			}
			attrs = append(attrs, slog.Int("status", sw.status), slog.Int64("bytes", sw.bytes),
				slog.Duration("duration", time.Since(start)))
			if aborted {
				attrs = append(attrs, slog.Bool("aborted", true))
			}
			log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(sw, r)
		aborted = false
	})
}
