package remux

import (
	"bytes"

	"github.com/Eyevinn/mp4ff/bits"
)

// h264ReorderFrames walks an H.264 SPS (NAL header included) to its VUI
// bitstream restriction and returns max_num_reorder_frames, and whether the
// SPS declares it (ISO/IEC 14496-10, 7.3.2.1.1 and E.1.1). mp4ff's full VUI
// parse trusts hrd_parameters' cpb_cnt_minus1, so a crafted 40-byte SPS
// keeps it looping for seconds; here every count is bounded as the spec
// bounds it and a read past the end stops the walk.
func h264ReorderFrames(sps []byte) (int, bool) {
	if len(sps) < 4 || sps[0]&0x1f != 7 {
		return 0, false
	}
	r := bits.NewEBSPReader(bytes.NewReader(sps[1:]))
	bad := func() bool { return r.AccError() != nil }
	profile := r.Read(8)
	r.Read(16) // constraint flags, level
	r.ReadExpGolomb()
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma := r.ReadExpGolomb()
		if chroma > 3 {
			return 0, false
		}
		if chroma == 3 {
			r.ReadFlag() // separate_colour_plane_flag
		}
		r.ReadExpGolomb() // bit_depth_luma_minus8
		r.ReadExpGolomb() // bit_depth_chroma_minus8
		r.ReadFlag()      // qpprime_y_zero_transform_bypass_flag
		if r.ReadFlag() { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := 0; i < lists && !bad(); i++ {
				if !r.ReadFlag() {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := 8, 8
				for j := 0; j < size && !bad(); j++ {
					if next != 0 {
						next = (last + r.ReadSignedGolomb() + 256) % 256
					}
					if next != 0 {
						last = next
					}
				}
			}
		}
	}
	r.ReadExpGolomb() // log2_max_frame_num_minus4
	switch r.ReadExpGolomb() {
	case 0:
		r.ReadExpGolomb() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.ReadFlag()         // delta_pic_order_always_zero_flag
		r.ReadSignedGolomb() // offset_for_non_ref_pic
		r.ReadSignedGolomb() // offset_for_top_to_bottom_field
		n := r.ReadExpGolomb()
		if n > 255 {
			return 0, false
		}
		for i := uint(0); i < n && !bad(); i++ {
			r.ReadSignedGolomb()
		}
	}
	r.ReadExpGolomb()  // max_num_ref_frames
	r.ReadFlag()       // gaps_in_frame_num_value_allowed_flag
	r.ReadExpGolomb()  // pic_width_in_mbs_minus1
	r.ReadExpGolomb()  // pic_height_in_map_units_minus1
	if !r.ReadFlag() { // frame_mbs_only_flag
		r.ReadFlag() // mb_adaptive_frame_field_flag
	}
	r.ReadFlag()      // direct_8x8_inference_flag
	if r.ReadFlag() { // frame_cropping_flag
		for range 4 {
			r.ReadExpGolomb()
		}
	}
	if !r.ReadFlag() || bad() { // vui_parameters_present_flag
		return 0, false
	}
	if r.ReadFlag() { // aspect_ratio_info_present_flag
		if r.Read(8) == 255 { // Extended_SAR
			r.Read(32)
		}
	}
	if r.ReadFlag() { // overscan_info_present_flag
		r.ReadFlag()
	}
	if r.ReadFlag() { // video_signal_type_present_flag
		r.Read(4)
		if r.ReadFlag() { // colour_description_present_flag
			r.Read(24)
		}
	}
	if r.ReadFlag() { // chroma_loc_info_present_flag
		r.ReadExpGolomb()
		r.ReadExpGolomb()
	}
	if r.ReadFlag() { // timing_info_present_flag
		r.Read(32)
		r.Read(32)
		r.ReadFlag()
	}
	hrd := false
	for range 2 { // nal_hrd_parameters, vcl_hrd_parameters
		if !r.ReadFlag() {
			continue
		}
		hrd = true
		cpbs := r.ReadExpGolomb() + 1
		if cpbs > 32 {
			return 0, false
		}
		r.Read(8) // bit_rate_scale, cpb_size_scale
		for i := uint(0); i < cpbs && !bad(); i++ {
			r.ReadExpGolomb()
			r.ReadExpGolomb()
			r.ReadFlag()
		}
		r.Read(20) // four delay / offset lengths
	}
	if hrd {
		r.ReadFlag() // low_delay_hrd_flag
	}
	r.ReadFlag()       // pic_struct_present_flag
	if !r.ReadFlag() { // bitstream_restriction_flag
		return 0, false
	}
	r.ReadFlag() // motion_vectors_over_pic_boundaries_flag
	for range 4 {
		r.ReadExpGolomb() // max_bytes_per_pic_denom ... log2_max_mv_length_vertical
	}
	reorder := r.ReadExpGolomb()
	r.ReadExpGolomb() // max_dec_frame_buffering
	if bad() || reorder > 16 {
		return 0, false
	}
	return int(reorder), true
}
