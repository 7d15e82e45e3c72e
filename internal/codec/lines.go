package codec

import "bytes"

// LineWriter is an io.Writer for COPY output: it calls Line for every
// complete line (without its '\n'), carrying a partial line over to the
// next Write. The line is only valid during the call.
type LineWriter struct {
	Line    func(line []byte) error
	pending []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	data := p
	if len(w.pending) > 0 {
		w.pending = append(w.pending, p...)
		data = w.pending
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := w.Line(data[:i]); err != nil {
			return 0, err
		}
		data = data[i+1:]
	}
	w.pending = append(w.pending[:0], data...)
	return len(p), nil
}

// Partial reports whether a line was left without its '\n' (the output
// ended in the middle of a row).
func (w *LineWriter) Partial() bool { return len(w.pending) > 0 }
