"""int8 by quantisation-aware fine-tuning, distilled (docs/speed.md, "int8"): a measurement,
not part of the package.

NNCF's fake quantisers in the torch model (GroupNorm, the attention and elementwise operations
left in float), fine-tuned so that the student's logits match the fp32 teacher's on crops of
real frames; the mask IoU and target agreement with fp32 at 0.7, in torch's fake-quantised
emulation, on 20 frames of held-out clips and DAUB sequences, every 100 steps.

    pip install nncf
    python docs/int8_qat.py STEPS THREADS LR    # RESUME=qat_state.pt to go on; SIDE=0 drops the threshold-side term
"""
import os, sys, time, numpy as np, cv2, torch, nncf
from nncf import IgnoredScope
from irstream.model.weights import load_weights
from irstream.model.segment import tiled
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
THR, TILE, OV = 0.7, 192, 16
W = "irstream/shipped/weights/lrrnet_light_real2.safetensors"
D = os.environ.get("IRSTREAM_DATA", "../shared/data")
def frames_of(path, idx):
    cap = cv2.VideoCapture(path); out = []
    for i in range(max(idx) + 1):
        ok, f = cap.read()
        if i in idx: out.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255)
    return out
def daub(seq, idx): return [cv2.imread(f"{D}/daub/{seq}/{i:04d}.png", 0).astype(np.float32) / 255 for i in idx]
# training frames: clips and DAUB sequences of fold a's training side (never the eval frames below)
train_imgs = frames_of(f"{D}/antiuav-clips/20190925_101846_1_4.mp4", set(range(0, 300, 6))) + \
    frames_of(f"{D}/antiuav-clips/3700000000002_132726_2.mp4", set(range(0, 300, 6))) + \
    daub("sequence3", range(1, 100, 3)) + daub("sequence6", range(1, 100, 3)) + daub("sequence4", range(1, 100, 3))
bgs = [cv2.imread(str(p), 0).astype(np.float32) / 255 for p in sorted(__import__("pathlib").Path(f"{D}/sirst-v2-backgrounds").rglob("*.png"))[:120]]
train_imgs += bgs
evals = frames_of(f"{D}/antiuav-clips/20190925_200805_1_9.mp4", {30, 90, 150, 210, 270}) + \
    frames_of(f"{D}/antiuav-clips/20190925_134301_1_7.mp4", {30, 90, 150, 210, 270}) + daub("sequence1", [10, 30, 50, 70, 90]) + daub("sequence5", [10, 30, 50, 70, 90])
rng = np.random.default_rng(0)
def rand_tile(crop=TILE):
    im = train_imgs[rng.integers(len(train_imgs))]
    if im.shape[0] < crop or im.shape[1] < crop:
        im = cv2.resize(im, (max(crop, im.shape[1]), max(crop, im.shape[0])))
    y = rng.integers(0, im.shape[0] - crop + 1); x = rng.integers(0, im.shape[1] - crop + 1)
    return im[y:y+crop, x:x+crop]
calib = [torch.from_numpy(rand_tile()[None, None].copy()) for _ in range(120)]
teacher, card = load_weights(W); teacher.eval()
student, _ = load_weights(W); student.eval()
FLOAT = ["group_norm", "scaled_dot_product_attention", "add", "sub", "mul", "cat", "interpolate", "__add__", "__sub__", "__mul__", "__radd__", "__rmul__", "matmul", "linear", "reshape", "transpose"]
t0 = time.time()
q = nncf.quantize(student, nncf.Dataset(calib), subset_size=len(calib), fast_bias_correction=True,
                  ignored_scope=IgnoredScope(types=FLOAT, validate=False))
print("quantized in", round(time.time() - t0), "s", flush=True)
def prob_fn(m):
    def fn(b):
        with torch.no_grad():
            return torch.sigmoid(m(torch.from_numpy(b))[0])[:, 0].numpy()
    return fn
def maps(m): return [tiled(prob_fn(m), im, TILE, OV) for im in evals]
def targets(mk):
    n, lab, st, cen = cv2.connectedComponentsWithStats((mk > THR).astype(np.uint8), connectivity=8); return cen[1:]
def agree(ms, ref, px=3.0):
    i = sum(int(((m > THR) & (r > THR)).sum()) for m, r in zip(ms, ref)); u = sum(int(((m > THR) | (r > THR)).sum()) for m, r in zip(ms, ref))
    same = miss = extra = 0
    for m, r in zip(ms, ref):
        a, b = targets(m), targets(r)
        for c in b:
            if len(a) and np.min(np.hypot(*(a - c).T)) <= px: same += 1
            else: miss += 1
        for c in a:
            if not (len(b) and np.min(np.hypot(*(b - c).T)) <= px): extra += 1
    return dict(iou=round(i / max(u, 1), 4), kept=same, lost=miss, new=extra)
ref = maps(teacher)
if os.environ.get("RESUME"):
    q.load_state_dict(torch.load(os.environ["RESUME"], weights_only=True))
print("start:", agree(maps(q), ref), flush=True)
# distillation: logits of the student toward the teacher's, weighted toward where either is near a target
opt = torch.optim.Adam([p for p in q.parameters() if p.requires_grad], lr=float(sys.argv[3]) if len(sys.argv) > 3 else 2e-5)
q.eval()  # no dropout: the teacher runs without it
t0 = time.time()
for step in range(1, STEPS + 1):
    x = torch.from_numpy(np.stack([rand_tile(128)[None] for _ in range(8)]))
    with torch.no_grad():
        tl = teacher(x)[0]
    sl = q(x)[0]
    # logits clipped so far-negative background does not dominate; where the teacher is near
    # its decision the error counts 20x
    w = 1 + 20 * ((tl > -4) | (sl > -4)).float()
    mse = (w * (sl.clamp(-12, 12) - tl.clamp(-12, 12)) ** 2).mean()
    # the side of the operating threshold, where either is within 4 nats of it
    c = float(np.log(THR / (1 - THR)))
    near = ((tl > c - 4) | (sl > c - 4)).float()
    side = torch.nn.functional.binary_cross_entropy_with_logits(2 * (sl - c), (tl > c).float(), weight=near, reduction="sum") / near.sum().clamp(min=1)
    loss = mse + float(os.environ.get("SIDE", "1")) * side
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 25 == 0:
        print(f"step {step} loss {loss.item():.4f} ({time.time()-t0:.0f} s)", flush=True)
    if step % 100 == 0 or step == STEPS:
        q.eval(); print(f"after {step}:", agree(maps(q), ref), flush=True)
        torch.save(q.state_dict(), os.environ.get("OUT", "qat_state.pt"))
q.eval()
torch.save(q.state_dict(), os.environ.get("OUT", "qat_state.pt"))
