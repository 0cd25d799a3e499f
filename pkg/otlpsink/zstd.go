package otlpsink

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// zstdName is the grpc-encoding and Content-Encoding name of zstd.
const zstdName = "zstd"

// Bounds of the zstd decoders: a frame may declare a window of up to 512 MiB (the
// library's default), which the decoder would allocate for a request of a few bytes.
// Real OTLP senders use small windows (the Go and Java encoders at most 8 MiB), as the
// router's receivers assume too.
const (
	maxZstdWindow = 8 << 20
	maxZstdMemory = 64 << 20
)

func init() { encoding.RegisterCompressor(zstdCompressor{}) }

// zstdCompressor lets the gRPC receiver take zstd-compressed requests (and answer in
// kind). Decoders are pooled; a decoder is returned to the pool when its stream ends.
type zstdCompressor struct{}

var (
	zstdEncoders sync.Pool
	zstdDecoders sync.Pool
)

// Name implements encoding.Compressor.
func (zstdCompressor) Name() string { return zstdName }

// Compress implements encoding.Compressor.
func (zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	if e, ok := zstdEncoders.Get().(*zstd.Encoder); ok {
		e.Reset(w)
		return &pooledEncoder{e}, nil
	}
	e, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return &pooledEncoder{e}, nil
}

type pooledEncoder struct{ *zstd.Encoder }

func (p *pooledEncoder) Close() error {
	err := p.Encoder.Close()
	zstdEncoders.Put(p.Encoder)
	return err
}

// Decompress implements encoding.Compressor.
func (zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	return newZstdReader(r)
}

// newZstdReader returns a pooled decoder reading r; it goes back to the pool at EOF or
// an error.
func newZstdReader(r io.Reader) (io.Reader, error) {
	d, ok := zstdDecoders.Get().(*zstd.Decoder)
	if !ok {
		var err error
		if d, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(maxZstdMemory)); err != nil {
			return nil, err
		}
	} else if err := d.Reset(r); err != nil {
		zstdDecoders.Put(d)
		return nil, err
	}
	return &pooledDecoder{d: d}, nil
}

type pooledDecoder struct{ d *zstd.Decoder }

func (p *pooledDecoder) Read(b []byte) (int, error) {
	if p.d == nil {
		return 0, io.EOF
	}
	n, err := p.d.Read(b)
	if err != nil {
		p.d.Reset(nil) //nolint:errcheck // releases the reader; the error is the read's
		zstdDecoders.Put(p.d)
		p.d = nil
	}
	return n, err
}
