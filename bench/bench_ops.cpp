// The nonlinear INT8 operators (and the bias gradient's column sums) next to their BF16 twins and a device-to-device copy,
// in one process: GB/s of minimal traffic (every input byte read once, every output byte written once; per-block scales
// included) and the speedup of INT8 over BF16. L2 is flushed before every timed run (clean: bench::L2Flush; --dirty-flush: by writing,
// as before session 9, for comparison); times are medians.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/timing.hpp"
#include "generator/families.hpp"
#include "runtime/bf16_ops.hpp"
#include "runtime/embedding.hpp"
#include "runtime/loss.hpp"
#include "runtime/ops.hpp"
#include "templates/bf16_ops.cuh"

using namespace jetforge;

int main(int argc, char** argv) {
  // --sweep: also every LayerNorm kernel variant (cluster, sub-tile, threads) and GELU and LayerNorm-apply tiles on each shape,
  // fastest first, and the cross-entropy kernel with other CTA sizes.
  const std::vector<std::string> args(argv + 1, argv + argc);
  const bool sweep = std::find(args.begin(), args.end(), "--sweep") != args.end();
  const bool dirty = std::find(args.begin(), args.end(), "--dirty-flush") != args.end();
  return bench::guarded_main("jetforge_bench_ops", [sweep, dirty, &args] {
    for (const auto& a : args)
      if (a != "--sweep" && a != "--dirty-flush") throw std::runtime_error("usage: jetforge_bench_ops [--sweep] [--dirty-flush]");
    Context ctx(0);
    const auto& dev = ctx.device().info();
    std::printf("device: %s, %d SMs\n", dev.name.c_str(), dev.sm_count);
    Stream stream;
    const bench::L2Flush flush(ctx, stream.get(), dirty ? bench::L2Flush::Kind::dirty : bench::L2Flush::Kind::clean);
    std::printf("L2 flushed %s before each timed run\n", dirty ? "by writing (dirty lines)" : "by reading (clean lines)");
    auto time = [&](const std::function<void(int)>& run) { return bench::median_ms(stream.get(), run, 3, 30, std::cref(flush)); };
    std::printf("\n%-22s %-11s %9s %8s %7s | %9s %8s %7s | %8s\n", "operator", "shape", "INT8 us", "GB/s", "vs copy", "BF16 us", "GB/s", "vs copy",
                "speedup");
    for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{8192, 768}, {8192, 4096}, {16384, 8192}}) {
      const double n = double(rows) * double(cols), scales = n / 1024 * 4;
      BlockTensor x(rows, cols), dy(rows, cols), y(rows, cols), dx(rows, cols);
      fill_random(x, std::uint64_t(rows + cols)), fill_random(dy, std::uint64_t(rows + cols + 1));
      DenseTensor xb(rows, cols, DType::bf16), dyb(rows, cols, DType::bf16);
      fill_random(xb, 1), fill_random(dyb, 2);
      DeviceBuffer outb(size_t(n) * 2), copy_dst(size_t(n) * 2);
      DenseTensor stream32(rows, cols, DType::f32);
      std::vector<float> ones(size_t(cols), 1.0f), zeros(size_t(cols), 0.0f);
      DeviceBuffer gamma(size_t(cols) * 4), beta(size_t(cols) * 4), mean(size_t(rows) * 4), rstd(size_t(rows) * 4), dgamma(size_t(cols) * 4),
          dbeta(size_t(cols) * 4), workspace(layernorm_backward_workspace_bytes(rows, cols)),
          workspace_bf16(bf16_layernorm_backward_workspace_bytes(rows, cols)), residual_mean(size_t(rows) * 4), residual_rstd(size_t(rows) * 4),
          residual_sums(residual_stats_workspace_bytes(rows, cols)), colsum_workspace(column_sum_workspace_bytes(rows, cols));
      const LayerNormStatsOut residual_stats{residual_mean.get(), residual_rstd.get(), residual_sums.get(), 1e-5f};
      gamma.upload(ones.data(), ones.size() * 4), beta.upload(zeros.data(), zeros.size() * 4);
      layernorm_forward(ctx, x.ref(), gamma.get(), beta.get(), y.ref(), mean.get(), rstd.get(), 1e-5f, stream.get());  // valid statistics
  
      auto run_bf16 = [&](gen::Bf16Op op, const DenseTensor& a, const DenseTensor* b) {
        const gen::Bf16OpSpec spec{op, 256};
        const Bf16OpParams params{reinterpret_cast<const bf16*>(a.ref().data),
                                  b ? reinterpret_cast<const bf16*>(b->ref().data) : nullptr,
                                  reinterpret_cast<bf16*>(outb.get()),
                                  reinterpret_cast<float*>(stream32.buffer().get()),
                                  reinterpret_cast<const float*>(mean.get()),
                                  reinterpret_cast<const float*>(rstd.get()),
                                  reinterpret_cast<const float*>(gamma.get()),
                                  reinterpret_cast<const float*>(beta.get()),
                                  rows,
                                  cols,
                                  0.1f,
                                  seed_key(7)};
        ctx.kernel(spec).launch(unsigned((std::int64_t(n) / 8 + 255) / 256), params, stream.get());
      };
      const double t_copy = time([&](int) { check(driver().cuMemcpyDtoDAsync(copy_dst.get(), xb.ref().data, size_t(n) * 2, stream.get()), "copy"); });
      const double copy_gbs = 4 * n / (t_copy * 1e-3) / 1e9;
      // The same copy at INT8 size (half the bytes): what launch and tail cost a transfer as small as an INT8 operator's.
      const double t_copy8 = time([&](int) { check(driver().cuMemcpyDtoDAsync(copy_dst.get(), xb.ref().data, size_t(n), stream.get()), "copy"); });
      struct Row {
        const char* name;
        double int8_bytes, bf16_bytes;  // minimal traffic
        std::function<void(int)> int8, bf16_run;
      };
      const Row rows_[] = {
          {"gelu forward", 2 * n + 2 * scales, 4 * n, [&](int) { gelu_forward(ctx, x.ref(), y.ref(), GeluForm::tanh, stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::gelu, xb, nullptr); }},
          {"gelu backward", 3 * n + 3 * scales, 6 * n, [&](int i) { gelu_backward(ctx, dy.ref(), x.ref(), dx.ref(), GeluForm::tanh, std::uint64_t(i), stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::gelu_grad, dyb, &xb); }},
          {"dropout forward", 2 * n + 2 * scales, 4 * n, [&](int) { dropout_forward(ctx, x.ref(), y.ref(), 0.1f, 7, stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::dropout, xb, nullptr); }},
          {"dropout backward", 2 * n + 2 * scales, 4 * n, [&](int) { dropout_backward(ctx, dy.ref(), dx.ref(), 0.1f, 7, stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::dropout, dyb, nullptr); }},
          {"layernorm forward", 2 * n + 2 * scales, 4 * n,
           [&](int) { layernorm_forward(ctx, x.ref(), gamma.get(), beta.get(), y.ref(), mean.get(), rstd.get(), 1e-5f, stream.get()); },
           [&](int) { bf16_layernorm_forward(ctx, xb.ref(), gamma.get(), beta.get(), DenseRef{outb.get(), rows, cols, DType::bf16}, mean.get(), rstd.get(), 1e-5f,
                                            stream.get()); }},
          {"layernorm fwd (stats)", 2 * n + 2 * scales, 4 * n,  // the statistics from the residual add's pass (both)
           [&](int) { layernorm_apply(ctx, x.ref(), gamma.get(), beta.get(), mean.get(), rstd.get(), y.ref(), stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::layernorm_apply, xb, nullptr); }},
          {"layernorm backward", 3 * n + 3 * scales, 6 * n,
           [&](int i) {
             layernorm_backward(ctx, dy.ref(), x.ref(), mean.get(), rstd.get(), gamma.get(), dx.ref(), dgamma.get(), dbeta.get(), std::uint64_t(i),
                                workspace.get(), stream.get());
           },
           [&](int) {
             bf16_layernorm_backward(ctx, dyb.ref(), xb.ref(), mean.get(), rstd.get(), gamma.get(), DenseRef{outb.get(), rows, cols, DType::bf16}, dgamma.get(),
                                     dbeta.get(), workspace_bf16.get(), stream.get());
           }},
          {"column sums", n + scales + 4 * double(cols), 2 * n + 4 * double(cols),  // a bias gradient: reads dY, writes cols FP32
           [&](int) { column_sum(ctx, dy.ref(), dgamma.get(), false, colsum_workspace.get(), stream.get()); },
           [&](int) { bf16_column_sum(ctx, dyb.ref(), dgamma.get(), false, colsum_workspace.get(), stream.get()); }},
          {"residual add (fp32)", 10 * n + 2 * scales, 12 * n,  // with the next LayerNorm's statistics (the twin: without)
           [&](int) { residual_add(ctx, stream32.ref(), x.ref(), y.ref(), &residual_stats, stream.get()); },
           [&](int) { run_bf16(gen::Bf16Op::residual, xb, nullptr); }},
      };
      const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
      std::printf("%-22s %-11s %9.1f %8.0f %6.0f%%\n", "copy (bf16 size)", shape.c_str(), t_copy * 1e3, copy_gbs, 100.0);
      std::printf("%-22s %-11s %9.1f %8.0f %6.0f%%\n", "copy (int8 size)", shape.c_str(), t_copy8 * 1e3, 2 * n / (t_copy8 * 1e-3) / 1e9,
                  100 * t_copy / (2 * t_copy8));
      for (const Row& r : rows_) {
        const double t8 = time(r.int8), gbs8 = r.int8_bytes / (t8 * 1e-3) / 1e9;
        const double t16 = time(r.bf16_run), gbs16 = r.bf16_bytes / (t16 * 1e-3) / 1e9;
        std::printf("%-22s %-11s %9.1f %8.0f %6.0f%% | %9.1f %8.0f %6.0f%% | %7.2fx\n", r.name, shape.c_str(), t8 * 1e3, gbs8, 100 * gbs8 / copy_gbs,
                    t16 * 1e3, gbs16, 100 * gbs16 / copy_gbs, t16 / t8);
      }
      // Prints the fastest four of `variants` (time, key) and marks the fit.
      auto print_sweep = [&](std::vector<std::pair<double, std::string>> variants, double bytes, const std::string& fit) {
        std::sort(variants.begin(), variants.end());
        for (std::size_t v = 0; v < variants.size() && v < 4; ++v)
          std::printf("  sweep %-62s %-11s %9.1f %6.0f%%%s\n", variants[v].second.c_str(), shape.c_str(), variants[v].first * 1e3,
                      100 * bytes / (variants[v].first * 1e-3) / 1e9 / copy_gbs, variants[v].second == fit ? "  (fit)" : "");
      };
      // The tiles bench_ops --sweep times for the streaming operators (those that divide the shape).
      const gen::BlockTile sweep_tiles[] = {{1, 4, 128}, {1, 8, 256}, {1, 8, 512}, {2, 4, 256}, {2, 8, 512}, {1, 8, 128}, {2, 4, 512}, {1, 2, 64}, {1, 4, 64}, {1, 1, 32}, {1, 2, 32}};
      const auto divides = [&](const gen::BlockTile& tile) { return rows % (tile.rows * 32) == 0 && cols % (tile.cols * 32) == 0; };
      if (sweep)
        for (auto op : {gen::Elementwise::gelu_tanh, gen::Elementwise::gelu_tanh_grad}) {
          const bool backward = op == gen::Elementwise::gelu_tanh_grad;
          const auto fit = gen::ElementwiseSpec::fit(op, backward ? gen::Rounding::stochastic : gen::Rounding::nearest, rows, cols);
          std::vector<std::pair<double, std::string>> variants;
          for (const gen::BlockTile& tile : sweep_tiles) {
            auto spec = fit;
            spec.tile = tile;
            if (!divides(tile)) continue;
            const double t = time([&](int i) {
              if (backward)
                gelu_backward(ctx, dy.ref(), x.ref(), dx.ref(), GeluForm::tanh, std::uint64_t(i), stream.get(), spec);
              else
                gelu_forward(ctx, x.ref(), y.ref(), GeluForm::tanh, stream.get(), spec);
            });
            variants.push_back({t, gen::canonical_key(spec)});
          }
          print_sweep(variants, (backward ? 3 : 2) * (n + scales), gen::canonical_key(fit));
        }
      if (sweep) {
        std::vector<std::pair<double, std::string>> variants;
        for (const gen::BlockTile& tile : sweep_tiles)
          if (divides(tile)) {
            const gen::LayerNormApplySpec spec{tile};
            variants.push_back({time([&](int) { layernorm_apply(ctx, x.ref(), gamma.get(), beta.get(), mean.get(), rstd.get(), y.ref(), stream.get(), spec); }),
                                gen::canonical_key(spec)});
          }
        print_sweep(variants, 2 * (n + scales), gen::canonical_key(gen::LayerNormApplySpec::fit(rows, cols)));
      }
      if (sweep)
        for (auto pass : {gen::LayerNormPass::forward, gen::LayerNormPass::backward}) {
          std::vector<std::pair<double, std::string>> variants;
          for (const auto& spec : gen::LayerNormSpec::variants(pass, cols, ctx.limits())) {
            const double t = time([&](int i) {
              if (pass == gen::LayerNormPass::forward)
                layernorm_forward(ctx, x.ref(), gamma.get(), beta.get(), y.ref(), mean.get(), rstd.get(), 1e-5f, stream.get(), spec);
              else
                layernorm_backward(ctx, dy.ref(), x.ref(), mean.get(), rstd.get(), gamma.get(), dx.ref(), dgamma.get(), dbeta.get(), std::uint64_t(i),
                                   workspace.get(), stream.get(), spec);
            });
            variants.push_back({t, gen::canonical_key(spec)});
          }
          print_sweep(variants, (pass == gen::LayerNormPass::forward ? 2 : 3) * (n + scales), gen::canonical_key(gen::LayerNormSpec::fit(pass, cols, ctx.limits())));
        }
      std::fflush(stdout);
    }

    // The LM head's loss on GPT-2 124M's logits (8 x 1024 tokens, vocabulary padded to 50304), BF16, in place:
    // minimal traffic one read and one write of the logits.
    const std::int64_t tokens = 8192, padded_vocab = 50304;
    DenseTensor logits(tokens, padded_vocab, DType::bf16), fresh(tokens, padded_vocab, DType::bf16);
    fill_random(fresh, 9);
    std::vector<int> targets(static_cast<std::size_t>(tokens));
    for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = int(i * 7919 % 50257);
    DeviceBuffer d_targets(targets.size() * 4), losses(targets.size() * 4), copy_dst(std::size_t(logits.ref().bytes()));
    d_targets.upload(targets.data(), targets.size() * 4);
    const double bytes = 2.0 * double(logits.ref().bytes());
    auto restore = [&](int) {  // fresh logits before each run (the kernel overwrites them), then the L2 flush
      check(driver().cuMemcpyDtoDAsync(logits.ref().data, fresh.ref().data, std::size_t(logits.ref().bytes()), stream.get()), "copy");
      flush(0);
    };
    const double t_copy = bench::median_ms(stream.get(), [&](int) {
      check(driver().cuMemcpyDtoDAsync(copy_dst.get(), fresh.ref().data, std::size_t(logits.ref().bytes()), stream.get()), "copy");
    }, 3, 30, restore);
    const double t_ce = bench::median_ms(stream.get(), [&](int) {
      cross_entropy(ctx, logits.ref(), 50257, d_targets.get(), losses.get(), 1.0f / float(tokens), stream.get());
    }, 3, 30, restore);
    std::printf("\n%-22s %-11s %9s %8s %7s\n", "operator", "shape", "us", "GB/s", "vs copy");
    std::printf("%-22s %-11s %9.1f %8.0f %6.0f%%\n", "copy (bf16 logits)", "8192x50304", t_copy * 1e3, bytes / (t_copy * 1e-3) / 1e9, 100.0);
    std::printf("%-22s %-11s %9.1f %8.0f %6.0f%%\n", "cross-entropy fwd+bwd", "8192x50304", t_ce * 1e3, bytes / (t_ce * 1e-3) / 1e9, 100 * t_copy / t_ce);
    if (sweep)
      for (int threads : {256, 512}) {  // the default is 1024
        const gen::CrossEntropySpec spec{DType::bf16, threads};
        const double t = bench::median_ms(stream.get(), [&](int) {
          cross_entropy(ctx, logits.ref(), 50257, d_targets.get(), losses.get(), 1.0f / float(tokens), stream.get(), spec);
        }, 3, 30, restore);
        std::printf("  sweep %-62s %-11s %9.1f %6.0f%%\n", gen::canonical_key(spec).c_str(), "8192x50304", t * 1e3, 100 * t_copy / t);
      }

    // Token + position embedding of GPT-2 124M (8 x 1024 tokens, 768 channels, FP32): forward reads a wte and a wpe
    // row and writes one per token; backward reads d_out once and updates the touched wte rows and every wpe row.
    const EmbeddingShape es{8, 1024, 768, 50257, 1024};
    std::vector<int> batch_tokens(static_cast<std::size_t>(es.batch * es.tokens));
    for (std::size_t i = 0; i < batch_tokens.size(); ++i) batch_tokens[i] = int(i * 7919 % 50257);
    DenseTensor wte(es.vocab, es.channels, DType::f32), wpe(es.max_positions, es.channels, DType::f32), emb(es.batch * es.tokens, es.channels, DType::f32);
    fill_random(wte, 11), fill_random(wpe, 12);
    DeviceBuffer d_tokens(batch_tokens.size() * 4), d_wte(std::size_t(wte.ref().bytes())), d_wpe(std::size_t(wpe.ref().bytes()));
    d_tokens.upload(batch_tokens.data(), batch_tokens.size() * 4);
    const DeviceTokenGroups groups(TokenGroups::of(batch_tokens));
    const double emb_bytes = 3.0 * double(emb.ref().bytes());
    const double t_fwd = time([&](int) { embedding_forward(ctx, es, d_tokens.get(), wte.ref().data, wpe.ref().data, emb.ref().data, stream.get()); });
    const double t_bwd = time([&](int) { embedding_backward(ctx, es, groups, emb.ref().data, d_wte.get(), d_wpe.get(), stream.get()); });
    std::printf("%-22s %-11s %9.1f %8.0f\n", "embedding forward", "8192x768", t_fwd * 1e3, emb_bytes / (t_fwd * 1e-3) / 1e9);
    std::printf("%-22s %-11s %9.1f %8.0f\n", "embedding backward", "8192x768", t_bwd * 1e3, emb_bytes / (t_bwd * 1e-3) / 1e9);
    return 0;
  });
}
