package samplersvc

import (
	"log/slog"
	"os"
)

type slogLogger = slog.Logger

func newTestLogger(id string) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", id)
}
