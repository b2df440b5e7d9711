# Regenerates the VP9 / AV1 / H.265 test media (ffmpeg 5.1 with libvpx,
# libaom, libx265, libopus): keyframe every 30 frames, no B-frames and no
# alt-ref (like WebRTC encoders). Run in an empty directory; the 320x240,
# 160x120 files go to remux/testdata, the 640x360 ones and the Opus sweep to
# testdata/media.
set -e
enc() { # name size frames codec args...
  name=$1; size=$2; n=$3; shift 3
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=$size:rate=30 -frames:v $n -pix_fmt yuv420p "$@" $name
}
VP9="-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -lag-in-frames 0 -auto-alt-ref 0 -g 30 -keyint_min 30 -row-mt 0"
AV1="-c:v libaom-av1 -usage realtime -cpu-used 8 -lag-in-frames 0 -g 30 -keyint_min 30"
HEVC="-c:v libx265 -preset ultrafast -x265-params log-level=error:keyint=30:min-keyint=30:bframes=0:open-gop=0:repeat-headers=1:scenecut=0"
enc vp9_320x240.ivf 320x240 60 $VP9 -b:v 200k
enc vp9_160x120.ivf 160x120 30 $VP9 -b:v 80k
enc av1_320x240.ivf 320x240 60 $AV1 -b:v 200k
enc av1_160x120.ivf 160x120 30 $AV1 -b:v 80k
enc h265_320x240.h265 320x240 60 $HEVC -b:v 200k -f hevc
enc h265_160x120.h265 160x120 30 $HEVC -b:v 80k -f hevc
enc vp9_640x360_30fps.ivf 640x360 90 $VP9 -b:v 250k
enc av1_640x360_30fps.ivf 640x360 90 $AV1 -b:v 250k
enc h265_640x360_30fps.h265 640x360 90 $HEVC -b:v 250k -f hevc
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "aevalsrc=0.3*sin(2*PI*(300+40*t)*t)|0.3*sin(2*PI*(500+25*t)*t):s=48000:d=8" -c:a libopus -b:a 32k -frame_duration 20 -application audio opus_sweep_8s.ogg  # -> testdata/media
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=160x120:rate=30 -frames:v 30 -pix_fmt yuv420p10le -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -lag-in-frames 0 -auto-alt-ref 0 -g 30 -b:v 100k vp9p2_160x120.ivf
# H.264 with B-frames (not from WebRTC encoders; OBS/GStreamer-style x264):
# Annex B in decode order, and each frame's presentation slot (1/30 s units).
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=30 -frames:v 60 -pix_fmt yuv420p -c:v libx264 -preset veryfast -profile:v main -b:v 200k -bf 2 -g 30 -keyint_min 30 -sc_threshold 0 -x264-params b-pyramid=none:b-adapt=0:open-gop=0:repeat-headers=1 bf.mp4
ffmpeg -hide_banner -loglevel error -y -i bf.mp4 -c copy -bsf:v h264_mp4toannexb -f h264 bframes_320x240.h264
ffprobe -v error -select_streams v -show_entries packet=pts -of csv=p=0 bf.mp4 | awk '{print $1/512}' > bframes_320x240.pts
