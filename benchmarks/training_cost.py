"""Cost of one stage-1 training step versus the number of particles per set.

Time (median of a few repeats) and peak resident memory of one forward + backward +
Adam step of the density objective at n = 300, 3,000 and 30,000 particles per set with
the same M, printed as ratios to n = 300. Each n runs in its own subprocess so that the
peak RSS (``resource.getrusage``) belongs to that n alone. The encoder is O(n); the
decoder's share (step time minus an encoder-only forward + backward) is O(B M)
whatever n.

Side by side, the same step for the AE-InvE-CD baseline (DeepSet encoder, set decoder
to n/2 points per species, Chamfer distance): its decoder output and its pairwise
distances grow with n (O(n^2) time and memory); sizes whose distance matrices would
exceed ``--cd-memory-gib`` are reported as skipped with the estimate.

    python benchmarks/training_cost.py [--batch 8] [--samples 600] [--repeats 5] [--threads 1]

``--throughput`` prints frames per second instead, for particles2d-shaped sets (n = 300,
2D, one species, d = 2): stage 1 (encoder + flow decoder forward, backward, Adam) at the
paper's size (NSF 8 transforms, hidden (128, 128), M = 600, 64 sets a step) and at the
small-scale flow of ``benchmarks/paper_table.py --scale small`` (4 transforms, hidden
(64, 64), M = 256, 16 sets a step), each in fp32 and under bf16 autocast (``--amp``)
with the relative change of the loss; stage 2 (ODE drift MLP (128, 128), 256 and 4,096
frame pairs a step); the one-off encoding of every frame before stage 2. From these it
estimates the epoch time over ``--trajectories`` trajectories with ``--frames`` frames
per trajectory per epoch (``train --frames-per-trajectory``):
``trajectories * frames / (stage-1 frames/s)``.

    python benchmarks/training_cost.py --throughput --threads 2 [--trajectories 1000] [--frames 32]
"""

import argparse
import statistics
import time
import json
import resource
import subprocess
import sys

import torch

from openmm_closure.models.decoder import FlowDecoder, density_nll
from openmm_closure.models.encoder import DeepSetEncoder


def step_cost(n, batch, samples, repeats, seed=0):
    torch.manual_seed(seed)
    enc = DeepSetEncoder(2, in_features=2, n_species=2)
    dec = FlowDecoder(2, 2, n_species=2, transforms=8, bins=16, hidden=(128, 128))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch * n, 2, generator=gen) * 2 - 1
    types = torch.randint(0, 2, (batch * n,), generator=gen)
    index = torch.arange(batch).repeat_interleave(n)

    def enc_only(out):
        t0 = time.perf_counter()
        z = enc.forward_flat(x, types, index, batch)
        z.sum().backward()
        out.append(time.perf_counter() - t0)

    def one(split):
        t0 = time.perf_counter()
        z = enc.forward_flat(x, types, index, batch)
        t1 = time.perf_counter()
        loss = density_nll(dec, z, x, types, index, samples, 0.01, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        split.append((t1 - t0, t2 - t0))

    one([])  # warm-up
    times, enc_times = [], []
    for _ in range(repeats):
        one(times)
        enc_only(enc_times)
    opt.zero_grad()
    total = statistics.median(t for _, t in times)
    encoder = statistics.median(enc_times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
    return total, encoder, peak


def chamfer_step_cost(n, batch, repeats, seed=0):
    """Median time of one AE-InvE-CD step (forward, backward, Adam) at n particles per set."""
    from openmm_closure.models.baselines import DeepSetSetDecoderEncoder, chamfer_distance

    torch.manual_seed(seed)
    enc = DeepSetSetDecoderEncoder(2, in_features=2, n_species=2, n_points=n // 2, decoder_hidden=(256, 256))
    opt = torch.optim.Adam(enc.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch * n, 2, generator=gen) * 2 - 1
    types = (torch.arange(batch * n) % 2).long()
    index = torch.arange(batch).repeat_interleave(n)

    def one(out):
        t0 = time.perf_counter()
        z = enc.forward_flat(x, types, index, batch)
        rec = enc.reconstruct(z)
        loss = sum(chamfer_distance(rec[b, s], x[(index == b) & (types == s)]) for b in range(batch) for s in range(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(time.perf_counter() - t0)

    one([])
    times = []
    for _ in range(repeats):
        one(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return statistics.median(times), peak


def _stage1_fps(transforms, hidden, samples, sets, n, repeats, amp, seed=0):
    """(frames/s, loss) of stage-1 steps on ``sets`` particles2d-shaped sets of n particles."""
    import contextlib

    torch.manual_seed(seed)
    enc = DeepSetEncoder(2, in_features=2, n_species=1)
    dec = FlowDecoder(2, 2, n_species=1, transforms=transforms, bins=16, hidden=hidden)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-4)
    x = torch.rand(sets * n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    types = torch.zeros(sets * n, dtype=torch.long)
    index = torch.arange(sets).repeat_interleave(n)

    def loss_once():
        gen = torch.Generator().manual_seed(1)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            z = enc.forward_flat(x, types, index, sets)
            return density_nll(dec, z, x, types, index, samples, 0.01, gen).float()

    with torch.no_grad():
        first = float(loss_once())
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = loss_once()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sets / statistics.median(times[1:]), first


def _stage2_fps(pairs, repeats, dim=3):
    from openmm_closure.models.dynamics import ODEDynamics

    torch.manual_seed(0)
    dyn = ODEDynamics(dim, (128, 128), dt=0.02)
    opt = torch.optim.Adam(dyn.parameters(), lr=1e-3)
    z0, z1 = torch.rand(pairs, dim) * 2 - 1, torch.rand(pairs, dim) * 2 - 1
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = dyn.loss(z0, z1, 0.02)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return pairs / statistics.median(times[1:])


@torch.no_grad()
def _encode_fps(n, repeats, chunk=64):
    enc = DeepSetEncoder(2, in_features=2, n_species=1)
    x = torch.rand(chunk * n, 2) * 2 - 1
    types = torch.zeros(chunk * n, dtype=torch.long)
    index = torch.arange(chunk).repeat_interleave(n)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        enc.forward_flat(x, types, index, chunk)
        times.append(time.perf_counter() - t0)
    return chunk / statistics.median(times[1:])


def throughput(a):
    n, traj, frames = 300, a.trajectories, a.frames
    print(f"frames per second, particles2d sets (n = {n}, 2D, d = 2); torch threads {torch.get_num_threads()}")
    print(f"{'stage 1':34s} {'fp32 f/s':>9s} {'bf16 f/s':>9s} {'bf16/fp32':>9s} {'loss change':>11s}"
          f" {'epoch min':>10s}")
    fps_small = None
    for label, (tr, hid, m, sets) in {"small (4 x (64,64), M 256, 16)": (4, (64, 64), 256, 16),
                                      "paper (8 x (128,128), M 600, 64)": (8, (128, 128), 600, 64)}.items():
        f32, l32 = _stage1_fps(tr, hid, m, sets, n, a.repeats, False)
        print(f"{label:34s} {f32:9.1f}", flush=True)
        f16, l16 = _stage1_fps(tr, hid, m, sets, n, a.repeats, True)
        epoch = traj * frames / f32 / 60
        print(f"{label:34s} {f32:9.1f} {f16:9.1f} {f16 / f32:9.2f} {abs(l16 - l32) / abs(l32):11.2e} {epoch:10.2f}")
        fps_small = f32 if fps_small is None else fps_small
    print(f"{'stage 2 (ODE drift (128,128))':34s} {'pairs/s':>9s}")
    for pairs in (256, 4096):
        f2 = _stage2_fps(pairs, a.repeats)
        print(f"{f'  {pairs} pairs a step':34s} {f2:9.0f}   epoch over {traj} x {frames} pairs: "
              f"{traj * frames / f2:.2f} s")
    fe = _encode_fps(n, a.repeats)
    print(f"encoding before stage 2 (once): {fe:.0f} frames/s; {traj} x 301 frames: {traj * 301 / fe / 60:.2f} min")
    print(f"estimate: one stage-1 epoch over {traj} trajectories x {frames} frames (--frames-per-trajectory "
          f"{frames}) at the small-scale flow = {traj} * {frames} / {fps_small:.1f} f/s = "
          f"{traj * frames / fps_small / 60:.2f} min; the most frames per trajectory in 5 min: "
          f"{int(300 * fps_small / traj)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="sets per step")
    p.add_argument("--samples", type=int, default=600, help="M per (set, species)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cd-memory-gib", type=float, default=4.0,
                   help="skip Chamfer sizes whose distance matrices exceed this")
    p.add_argument("--throughput", action="store_true", help="frames/s of stage 1 and 2 (see above)")
    p.add_argument("--trajectories", type=int, default=1000, help="for the --throughput epoch estimate")
    p.add_argument("--frames", type=int, default=32, help="frames per trajectory per epoch, for the estimate")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--one-cd", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.throughput:
        throughput(a)
        return
    if a.one is not None:
        print(json.dumps(step_cost(a.one, a.batch, a.samples, a.repeats)))
        return
    if a.one_cd is not None:
        print(json.dumps(chamfer_step_cost(a.one_cd, a.batch, a.repeats)))
        return
    print(f"one stage-1 step: B = {a.batch} sets, 2 species, M = {a.samples}, "
          f"NSF 8x16 bins hidden (128, 128), DeepSet psi (64, 64); torch threads {torch.get_num_threads()}")
    def measure(flag, n):
        cmd = [sys.executable, __file__, flag, str(n), "--batch", str(a.batch),
               "--samples", str(a.samples), "--repeats", str(a.repeats)]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    sizes = (300, 3000, 30000)
    rows = [(n, *measure("--one", n)) for n in sizes]
    t0, e0, m0 = rows[0][1], rows[0][2], rows[0][3]
    d0 = t0 - e0
    print(f"{'n':>7} {'step s':>8} {'ratio':>6} {'encoder s':>10} {'decoder s':>10} {'ratio':>6}"
          f" {'peak RSS MiB':>13} {'ratio':>6}")
    for n, t, e, m in rows:
        print(f"{n:>7} {t:>8.4f} {t / t0:>6.2f} {e:>10.4f} {t - e:>10.4f} {(t - e) / d0:>6.2f}"
              f" {m / 2**20:>13.1f} {m / m0:>6.2f}")

    print("\nAE-InvE-CD (Chamfer) step at the same n, and ours over it")
    print(f"{'n':>7} {'CD step s':>10} {'ours/CD':>8} {'peak RSS MiB':>13}")
    for n, t, _, _ in rows:
        # distance matrices kept for backward: B sets x 2 species x (n/2)^2 float32
        need = a.batch * 2 * (n // 2) ** 2 * 4 / 2**30
        if need > a.cd_memory_gib:
            print(f"{n:>7} {'skipped':>10} {'':>8} {'':>13}  (distance matrices ~{need:.0f} GiB)")
            continue
        cd, peak = measure("--one-cd", n)
        print(f"{n:>7} {cd:>10.4f} {t / cd:>8.2f} {peak / 2**20:>13.1f}")


if __name__ == "__main__":
    main()
