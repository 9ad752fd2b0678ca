package codec

// G.711 companding (ITU-T G.711), computed arithmetically so no lookup tables are needed.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

// LinearToUlaw compresses one 16-bit linear sample to a µ-law byte.
func LinearToUlaw(sample int16) byte {
	s := int32(sample)
	var sign int32
	if s < 0 {
		sign = 0x80
		s = -s
	}
	if s > ulawClip {
		s = ulawClip
	}
	s += ulawBias
	exp := int32(7)
	for mask := int32(0x4000); s&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

// UlawToLinear expands one µ-law byte to a 16-bit linear sample.
func UlawToLinear(u byte) int16 {
	u = ^u
	exp := int32(u>>4) & 7
	mant := int32(u) & 0x0F
	s := ((mant << 3) + ulawBias) << exp
	s -= ulawBias
	if u&0x80 != 0 {
		return int16(-s)
	}
	return int16(s)
}

// LinearToAlaw compresses one 16-bit linear sample to an A-law byte.
func LinearToAlaw(sample int16) byte {
	s := int32(sample) >> 3 // 13-bit magnitude domain
	var mask byte
	if s >= 0 {
		mask = 0xD5
	} else {
		mask = 0x55
		s = -s - 1
	}
	seg := 0
	for end := int32(0x1F); seg < 8 && s > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return 0x7F ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(s>>1) & 0x0F
	} else {
		a |= byte(s>>uint(seg)) & 0x0F
	}
	return a ^ mask
}

// AlawToLinear expands one A-law byte to a 16-bit linear sample.
func AlawToLinear(a byte) int16 {
	a ^= 0x55
	t := int32(a&0x0F) << 4
	seg := int32(a&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= uint(seg - 1)
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
