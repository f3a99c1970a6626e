package h1

// shrink gives up a read buffer grown for a big head once readHead has
// copied the head out, when what follows it (a body's first bytes,
// pipelined requests) fits a pooled buffer. Issue 23: a 64 KB head was held
// twice (the buffer and the head string) until its response ended. The
// reservation stays until release, standing for the head string, which
// lives as long as the request: MaxHeadMemory still bounds the big heads
// in flight, and the next head's growth reserves only beyond it (fill).
func (c *conn) shrink() {
	if len(c.buf) <= bufSize || c.w-c.r > bufSize {
		return
	}
	nb := getBuf()
	c.w = copy(nb, c.buf[c.r:c.w])
	c.r, c.buf = 0, nb
}
