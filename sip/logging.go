package sip

import (
	"context"
	"log/slog"
)

// quietHandler demotes sipgo's per-message error logs (unparseable input, requests it cannot
// build a transaction for) to debug level, so hostile traffic cannot flood the log.
type quietHandler struct{ slog.Handler }

func noisy(msg string) bool {
	switch msg {
	case "failed to parse", "Server tx failed to handle request", "Client tx failed to handle response",
		"Read filter error", "Failed to send stateless 400 for malformed request":
		return true
	}
	return false
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && noisy(r.Message) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(n string) slog.Handler { return quietHandler{h.Handler.WithGroup(n)} }
