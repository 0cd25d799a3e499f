package export

import (
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// The gRPC runtime has gzip but no zstd compressor; this registers one under "zstd"
// (the name OTLP clients and collectors use), for requests and responses alike.
func init() { encoding.RegisterCompressor(zstdCompressor{}) }

var (
	zstdEncoders = sync.Pool{New: func() any {
		w, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
		return w
	}}
	zstdDecoders = sync.Pool{New: func() any {
		r, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		return r
	}}
	gzipWriters = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
		return w
	}}
)

type zstdCompressor struct{}

func (zstdCompressor) Name() string { return CompressionZstd }

func (zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	enc := zstdEncoders.Get().(*zstd.Encoder)
	enc.Reset(w)
	return &zstdWriter{Encoder: enc}, nil
}

func (zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	dec := zstdDecoders.Get().(*zstd.Decoder)
	if err := dec.Reset(r); err != nil {
		zstdDecoders.Put(dec)
		return nil, err
	}
	return &zstdReader{dec: dec}, nil
}

// zstdWriter returns its encoder to the pool on Close.
type zstdWriter struct{ *zstd.Encoder }

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	zstdEncoders.Put(w.Encoder)
	w.Encoder = nil
	return err
}

// zstdReader returns its decoder to the pool at EOF.
type zstdReader struct{ dec *zstd.Decoder }

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.dec == nil {
		return 0, io.EOF
	}
	n, err := r.dec.Read(p)
	if err == io.EOF {
		_ = r.dec.Reset(nil)
		zstdDecoders.Put(r.dec)
		r.dec = nil
	}
	return n, err
}

// compressBody appends payload compressed with compression to dst (HTTP bodies).
func compressBody(dst []byte, compression string, payload []byte) ([]byte, error) {
	switch compression {
	case CompressionZstd:
		enc := zstdEncoders.Get().(*zstd.Encoder)
		defer zstdEncoders.Put(enc)
		return enc.EncodeAll(payload, dst), nil
	case CompressionGzip:
		buf := byteWriter{b: dst}
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		w.Reset(&buf)
		if _, err := w.Write(payload); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.b, nil
	}
	return append(dst, payload...), nil
}

type byteWriter struct{ b []byte }

func (w *byteWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
