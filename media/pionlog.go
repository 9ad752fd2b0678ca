package media

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogFactory routes pion's logs to slog: pion errors become warnings, pion warnings debug
// messages; pion's info/debug/trace chatter is dropped.
type pionLogFactory struct{ log *slog.Logger }

func (f *pionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l pionLogger) Trace(string)              {}
func (l pionLogger) Tracef(string, ...any)     {}
func (l pionLogger) Debug(string)              {}
func (l pionLogger) Debugf(string, ...any)     {}
func (l pionLogger) Info(string)               {}
func (l pionLogger) Infof(string, ...any)      {}
func (l pionLogger) Warn(msg string)           { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(f string, a ...any)  { l.emit(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (l pionLogger) Error(msg string)          { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(f string, a ...any) { l.emit(slog.LevelWarn, fmt.Sprintf(f, a...)) }
