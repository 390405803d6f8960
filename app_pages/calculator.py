"""Calculator: the lecture's CNN arithmetic with the numbers substituted, for projecting in class.

Layout only. Every number comes from `explorer.arithmetic`; this file just substitutes them into the formulas.
Opened fresh (default widget values) each section shows the lecture's worked example.
"""
import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import hex_to_rgb, qualitative

from explorer import arithmetic as ar
from explorer import ui

esc = ui.md_escape
fmt = ui.fmt_int


def tex(n) -> str:
    """A number inside LaTeX with thousands separators: 471040000 -> 471{,}040{,}000 (no space after commas)."""
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.4g}".replace(",", "{,}")
    return f"{int(n):,}".replace(",", "{,}")


def times(*factors) -> str:
    return r" \cdot ".join(tex(f) for f in factors)


def ratio_text(big: int, small: int) -> str:
    """How the cheaper option compares: "1/11.5" when it is cheaper, "2.3×" when it costs more."""
    if small <= big:
        return f"1/{big / small:.1f}"
    return f"{small / big:.1f}×"


def same_conv_inputs(cols, prefix: str, hw: int, c_in: int, c_out: int, kernel: int) -> tuple[int, int, int, int]:
    """H = W, C_in, C_out and K of a 'same'-padded convolution in the first four of ``cols``; keys calc.<prefix>_*."""
    return (int(cols[0].number_input("H = W", 1, 1024, hw, key=f"calc.{prefix}_hw",
                                     help="'Same' padding: output is H × W.")),
            int(cols[1].number_input("C_in", 1, 8192, c_in, key=f"calc.{prefix}_cin")),
            int(cols[2].number_input("C_out", 1, 8192, c_out, key=f"calc.{prefix}_cout")),
            cols[3].slider("Kernel K", 1, 11, kernel, key=f"calc.{prefix}_k"))


def cost_bars(rows: list[tuple[str, list[tuple[str, int]]]]):
    """Horizontal bars, one per option, stacked from its parts and labelled with the total at the end, so the
    ratio is seen as well as read. A part's colour is the same in every bar (the legend names it)."""
    fig = go.Figure()
    colours, seen = {}, set()
    palette = ["#1a73e8", "#fbbc04", "#34a853", "#ea4335"]
    for label, parts in rows:
        for part, value in parts:
            colour = colours.setdefault(part, palette[len(colours) % len(palette)])
            fig.add_trace(go.Bar(y=[label], x=[value], orientation="h", name=part, marker_color=colour,
                                 showlegend=part not in seen, legendgroup=part,
                                 hovertemplate=f"{part}: %{{x:,}}<extra></extra>"))
            seen.add(part)
        fig.add_annotation(y=label, x=sum(v for _, v in parts), text=f"  {sum(v for _, v in parts):,}",
                           showarrow=False, xanchor="left", font=dict(size=15))
    longest = max(sum(v for _, v in parts) for _, parts in rows)
    fig.update_layout(barmode="stack", height=90 + 50 * len(rows), margin=dict(l=10, r=10, t=10, b=10),
                      font=dict(size=15), legend=dict(orientation="h", x=0, y=-0.35, yanchor="top"),
                      xaxis=dict(title_text="multiplications", tickformat=",", range=[0, longest * 1.2]),
                      yaxis=dict(autorange="reversed"), bargap=0.35)
    return fig


st.header("Calculator", anchor=False)
st.markdown("The lecture's arithmetic, with your numbers. Each section opens on the slide's worked example: "
            "[output size](#output-size) · [parameters](#parameters) · [1×1 bottleneck](#bottleneck) · "
            "[depthwise separable](#separable) · [pooling](#pooling) · [softmax](#softmax) · "
            "[RoI pooling](#roi-pooling)")
st.caption("No network on this page: single layers from the numbers you type. Your composition and the catalog "
           "model stay as they are (sidebar).")

# -- output size ----------------------------------------------------------------------------------------------
st.subheader("Output size of a convolution or pooling layer", anchor="output-size", divider="gray")
c = st.columns(5)
n_in = int(c[0].number_input("Input size N_in (px)", min_value=1, max_value=4096, value=227, step=1,
                             key="calc.n_in", help="Height (or width) of the input; the formula works per axis."))
f = c[1].slider("Kernel F", 1, 15, 11, key="calc.f")
s = c[2].slider("Stride S", 1, 8, 4, key="calc.s")
p = c[3].slider("Padding P", 0, 10, 0, key="calc.p")
d = c[4].slider("Dilation D", 1, 6, 1, key="calc.d", help="Spreads the kernel over D·(F − 1) + 1 pixels; the "
                                                          "lecture's formula is D = 1.")
span = d * (f - 1) + 1
num = n_in - span + 2 * p
f_sym = "F" if d == 1 else "F'"
lines = [rf"N_\text{{out}} = \frac{{N_\text{{in}} - {f_sym} + 2P}}{{S}} + 1"]
if d > 1:
    lines.insert(0, rf"F' = D(F - 1) + 1 = {d} \cdot ({f} - 1) + 1 = {span}")
try:
    n_out = ar.conv_output_size(n_in, f, s, p, d)
except ValueError as e:
    st.latex(r" \\ ".join(lines) + rf" = \frac{{{n_in} - {span} + 2 \cdot {p}}}{{{s}}} + 1 = "
                                    rf"\frac{{{num}}}{{{s}}} + 1 < 1")
    st.error(esc(e), icon=":material/error:")
else:
    if num % s:
        body = (rf"= \left\lfloor \frac{{{n_in} - {span} + 2 \cdot {p}}}{{{s}}} \right\rfloor + 1 = "
                rf"\left\lfloor \frac{{{num}}}{{{s}}} \right\rfloor + 1 = {num // s} + 1 = \mathbf{{{n_out}}}")
    else:
        body = (rf"= \frac{{{n_in} - {span} + 2 \cdot {p}}}{{{s}}} + 1 = \frac{{{num}}}{{{s}}} + 1 = "
                rf"{num // s} + 1 = \mathbf{{{n_out}}}")
    st.latex(r" \\ ".join(lines[:-1] + [lines[-1] + " " + body]) if d > 1 else lines[-1] + " " + body)
    kind = ("**same** convolution: the output keeps the input's size" if n_out == n_in else
            "**valid** convolution (no padding): the output shrinks" if p == 0 else "")
    st.markdown(f"Output: **{fmt(n_out)} × {fmt(n_out)}** from {fmt(n_in)} × {fmt(n_in)}"
                + (f" — {kind}." if kind else "."))
    if num % s:
        st.caption(f"{num} is not a multiple of {s}: PyTorch rounds down, so the last {num % s} pixel(s) of the "
                   "padded input are never covered by a window.")
st.caption("Defaults: AlexNet's first layer, 96 filters of 11×11 with stride 4 on a 227-pixel input → 55. "
           "VGG's 3×3 with stride 1 and padding 1 keeps 224 → 224; a 2×2 pool with stride 2 halves it.")

# -- parameters -----------------------------------------------------------------------------------------------
st.subheader("Parameters of a convolution and a fully connected layer", anchor="parameters", divider="gray")
st.markdown("**Convolution**")
c = st.columns(6, vertical_alignment="bottom")
c_in = int(c[0].number_input("C_in", 1, 65536, 3, key="calc.conv_cin"))
c_out = int(c[1].number_input("C_out", 1, 65536, 64, key="calc.conv_cout"))
k = c[2].slider("Kernel K", 1, 11, 3, key="calc.conv_k")
groups = int(c[3].number_input("Groups", 1, 65536, 1, key="calc.conv_groups",
                               help="nn.Conv2d(groups=…): each filter sees C_in / groups channels. "
                                    "groups = C_in = C_out is a depthwise convolution."))
hw = int(c[4].number_input("Output H = W", 1, 4096, 224, key="calc.conv_hw",
                           help="Output positions for the cost (224 with VGG's same padding)."))
bias = c[5].checkbox("Bias", value=True, key="calc.conv_bias")
try:
    total = ar.conv_params(c_in, c_out, k, bias=bias, groups=groups)
    weights = ar.conv_params(c_in, c_out, k, bias=False, groups=groups)
    macs = ar.conv_macs(c_in, c_out, k, hw, hw, groups=groups)
except ValueError as e:
    st.error(esc(e), icon=":material/error:")
else:
    per = f"{tex(c_in)}/{groups}" if groups > 1 else tex(c_in)
    sym = r"C_\text{in}/g" if groups > 1 else r"C_\text{in}"
    b = " + 1" if bias else ""
    st.latex(rf"\text{{params}} = ({sym} \cdot K_w \cdot K_h{b}) \cdot C_\text{{out}} = "
             rf"({per} \cdot {k} \cdot {k}{b}) \cdot {tex(c_out)} = \mathbf{{{tex(total)}}}")
    st.latex(rf"\text{{MACs}} = K_w K_h {sym} \cdot H_\text{{out}} W_\text{{out}} C_\text{{out}} = "
             rf"{k} \cdot {k} \cdot {per} \cdot {times(hw, hw, c_out)} = {tex(macs)}")
    m = st.columns(4)
    m[0].metric("Parameters", fmt(total))
    m[1].metric("Weights (no biases)", fmt(weights), help="What the lecture's VGG16 table counts.")
    m[2].metric("MACs per image", fmt(macs), help="Multiplications for one image; 1 MAC = 2 FLOPs.")
    m[3].metric("FLOPs per image", fmt(2 * macs), help="Floating-point operations = 2 × MACs.")
st.caption("Defaults: VGG16's first conv, 64 filters of 3×3×3: 1,728 weights (the lecture's table, biases not "
           "counted) + 64 biases = 1,792.")

st.markdown("**Fully connected**")
c = st.columns(6, vertical_alignment="bottom")
fc_in = int(c[0].number_input("N_in", 1, 10**7, 25088, key="calc.fc_in",
                              help="Inputs: 25,088 = 7×7×512 flattened (VGG16)."))
fc_out = int(c[1].number_input("N_out", 1, 10**6, 4096, key="calc.fc_out"))
fc_bias = c[2].checkbox("Bias", value=True, key="calc.fc_bias")
fc_total = ar.fc_params(fc_in, fc_out, bias=fc_bias)
fc_weights = ar.fc_params(fc_in, fc_out, bias=False)
b = " + 1" if fc_bias else ""
st.latex(rf"\text{{params}} = (N_\text{{in}}{b}) \cdot N_\text{{out}} = ({tex(fc_in)}{b}) \cdot {tex(fc_out)} "
         rf"= \mathbf{{{tex(fc_total)}}}")
m = st.columns(4)
m[0].metric("Parameters", fmt(fc_total))
m[1].metric("Weights (no biases)", fmt(fc_weights))
st.caption("Defaults: VGG16's first FC layer, 7×7×512 = 25,088 → 4,096: 102,760,448 weights, the biggest single "
           "layer of the network. After global average pooling (7×7×512 → 512) it would need 512 × 4,096.")

# -- 1x1 bottleneck -------------------------------------------------------------------------------------------
st.subheader("Cost of a 5×5 convolution, with and without a 1×1 bottleneck", anchor="bottleneck-1x1", divider="gray")
c = st.columns(5)
b_hw, b_in, b_out, b_k = same_conv_inputs(c, "b", hw=32, c_in=200, c_out=92, kernel=5)
b_mid = c[4].slider("Bottleneck channels", 1, 256, 16, key="calc.b_mid",
                    help="Channels of the 1×1 reduction before the K×K conv.")
bc = ar.bottleneck_comparison(h=b_hw, w=b_hw, c_in=b_in, c_out=b_out, kernel=b_k, c_mid=b_mid)
st.latex(rf"\text{{direct}} = K K C_\text{{in}} \cdot H W C_\text{{out}} = {times(b_k, b_k, b_in)} \cdot "
         rf"{times(b_hw, b_hw, b_out)} = \mathbf{{{tex(bc.direct)}}}")
st.latex(rf"\begin{{aligned}} \text{{bottleneck}} &= 1 \cdot 1 \cdot C_\text{{in}} \cdot H W C_\text{{mid}} "
         rf"+ K K C_\text{{mid}} "
         rf"\cdot H W C_\text{{out}} \\ &= 1 \cdot 1 \cdot {tex(b_in)} \cdot {times(b_hw, b_hw, b_mid)} + "
         rf"{times(b_k, b_k, b_mid)} \cdot {times(b_hw, b_hw, b_out)} = {tex(bc.reduce)} + {tex(bc.conv)} = "
         rf"\mathbf{{{tex(bc.bottleneck)}}} \end{{aligned}}")
m = st.columns(3)
m[0].metric(f"{b_k}×{b_k} conv directly", fmt(bc.direct))
m[1].metric(f"1×1 to {b_mid}, then {b_k}×{b_k}", fmt(bc.bottleneck))
m[2].metric("Bottleneck costs", ratio_text(bc.direct, bc.bottleneck), help=f"Ratio {bc.ratio:.3f}.")
cheaper = bc.bottleneck <= bc.direct
st.markdown(f"**{fmt(bc.direct)}** vs **{fmt(bc.bottleneck)}** multiplications: the bottleneck needs "
            + (f"about **{ratio_text(bc.direct, bc.bottleneck)}** of the work."
               if cheaper else f"**{ratio_text(bc.direct, bc.bottleneck)}** the work: no saving at this width."))
st.plotly_chart(cost_bars([(f"{b_k}×{b_k} directly", [(f"{b_k}×{b_k} conv", bc.direct)]),
                           (f"1×1, then {b_k}×{b_k}",
                            [("1×1 reduction", bc.reduce), (f"{b_k}×{b_k} conv", bc.conv)])]),
                config={"displayModeBar": False}, key="calc.b_chart")
st.caption("Defaults: the slide's 32×32×200 → 32×32×92 with a 5×5 conv, ≈ 470 million multiplications; "
           "reducing to 16 channels first, ≈ 40 million. The slide rounds the ratio to about 1/10; exactly it is "
           "1/11.5.")

# -- depthwise separable --------------------------------------------------------------------------------------
st.subheader("Normal versus depthwise separable convolution", anchor="depthwise-separable", divider="gray")
s_hw, s_in, s_out, s_k = same_conv_inputs(st.columns(4), "s", hw=8, c_in=3, c_out=256, kernel=5)
sc = ar.separable_comparison(h=s_hw, w=s_hw, c_in=s_in, c_out=s_out, kernel=s_k)
pos = s_hw * s_hw
st.latex(rf"\text{{normal}} = C_\text{{out}} \cdot K K C_\text{{in}} \cdot HW = {times(s_out, s_k, s_k, s_in, pos)}"
         rf" = \mathbf{{{tex(sc.normal)}}}")
st.latex(rf"\text{{depthwise}} = K K C_\text{{in}} \cdot HW = {times(s_k, s_k, s_in, pos)} = {tex(sc.depthwise)}")
st.latex(rf"\text{{pointwise}} = C_\text{{out}} \cdot 1 \cdot 1 \cdot C_\text{{in}} \cdot HW = "
         rf"{times(s_out, 1, 1, s_in, pos)} = {tex(sc.pointwise)}")
st.latex(rf"\text{{separable}} = {tex(sc.depthwise)} + {tex(sc.pointwise)} = \mathbf{{{tex(sc.separable)}}}")
m = st.columns(5)
m[0].metric("Normal conv", fmt(sc.normal))
m[1].metric("Depthwise", fmt(sc.depthwise))
m[2].metric("Pointwise", fmt(sc.pointwise))
m[3].metric("Separable", fmt(sc.separable))
m[4].metric("Separable costs", ratio_text(sc.normal, sc.separable), help=f"Ratio {sc.ratio:.3f}.")
p_normal = ar.conv_params(s_in, s_out, s_k, bias=False)
p_dw = ar.conv_params(s_in, s_in, s_k, bias=False, groups=s_in)
p_pw = ar.conv_params(s_in, s_out, 1, bias=False)
st.markdown(f"**{fmt(sc.normal)}** vs {fmt(sc.depthwise)} + {fmt(sc.pointwise)} = **{fmt(sc.separable)}** "
            f"multiplications ({pos} = {s_hw}×{s_hw} output positions). Weights: {fmt(p_normal)} vs "
            f"{fmt(p_dw)} + {fmt(p_pw)} = {fmt(p_dw + p_pw)}.")
st.plotly_chart(cost_bars([("normal", [(f"{s_k}×{s_k} conv", sc.normal)]),
                           ("depthwise separable", [("depthwise", sc.depthwise), ("pointwise 1×1", sc.pointwise)])]),
                config={"displayModeBar": False}, key="calc.s_chart")
pad = (s_k - 1) // 2
st.code(f"nn.Conv2d({s_in}, {s_out}, kernel_size={s_k}, padding={pad})                # normal\n"
        f"nn.Sequential(\n"
        f"    nn.Conv2d({s_in}, {s_in}, kernel_size={s_k}, padding={pad}, groups={s_in}),  # depthwise: one "
        f"{s_k}×{s_k} filter per channel\n"
        f"    nn.Conv2d({s_in}, {s_out}, kernel_size=1),                      # pointwise: mixes the channels\n"
        f")", language="python")
st.caption("Defaults: the slide's 8×8×3 input and 256 kernels of 5×5×3. MobileNet and Xception are built from "
           "the separable pair.")

# -- pooling --------------------------------------------------------------------------------------------------
st.subheader("Max and average pooling", anchor="pooling", divider="gray")
SLIDE_GRID = [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]
c = st.columns([1.3, 1, 1, 1.6], gap="medium")
with c[0]:
    st.markdown("**Input** (click a cell to edit)")
    edited = st.data_editor(pd.DataFrame(SLIDE_GRID, columns=["1", "2", "3", "4"]), key="calc.grid",
                            hide_index=True, width=260,
                            column_config={col: st.column_config.NumberColumn(col, width=55, required=True)
                                           for col in "1234"})
    ps = st.slider("Window", 1, 4, 2, key="calc.pool_size",
                   help="Window size (square): 2 means 2×2.")
    pst = st.slider("Stride", 1, 4, 2, key="calc.pool_stride")
grid_df = edited.apply(pd.to_numeric, errors="coerce")
if grid_df.isna().any().any():
    st.error("Every cell of the grid needs a number: fill in the empty cells.", icon=":material/error:")
else:
    grid = [[v.item() if hasattr(v, "item") else v for v in row] for row in grid_df.to_numpy()]
    grid = [[int(v) if float(v).is_integer() else float(v) for v in row] for row in grid]
    try:
        mx, av = ar.max_pool(grid, ps, pst), ar.avg_pool(grid, ps, pst)
    except ValueError as e:
        with c[3]:
            st.error(esc(e), icon=":material/error:")
    else:
        labels = [str(j + 1) for j in range(len(mx[0]))]
        with c[1]:
            st.markdown("**Max pool**")
            st.dataframe(pd.DataFrame(mx, columns=labels), hide_index=True, key="calc.max_out",
                         column_config={col: st.column_config.NumberColumn(col, width=55) for col in labels})
        with c[2]:
            st.markdown("**Average pool**")
            st.dataframe(pd.DataFrame(av, columns=labels), hide_index=True, key="calc.avg_out",
                         column_config={col: st.column_config.NumberColumn(col, width=65, format="%.2f")
                                        for col in labels})
        with c[3]:
            first = [grid[i][j] for i in range(ps) for j in range(ps)]
            fs = ", ".join(tex(v) for v in first)
            st.markdown("**Top-left window**")
            st.latex(rf"\max({fs}) = {tex(mx[0][0])}")
            st.latex(rf"\frac{{{' + '.join(tex(v) for v in first)}}}{{{len(first)}}} = {av[0][0]:.4g}")
            n = len(grid)
            st.latex(rf"N_\text{{out}} = \frac{{{n} - {ps}}}{{{pst}}} + 1 = {len(mx)}" if (n - ps) % pst == 0 else
                     rf"N_\text{{out}} = \left\lfloor\frac{{{n} - {ps}}}{{{pst}}}\right\rfloor + 1 = {len(mx)}")
        as_list = lambda g: "[" + ", ".join("[" + ", ".join(ui.fmt_num(v) for v in row) + "]" for row in g) + "]"
        st.markdown(f"{ps}×{ps} window, stride {pst}: max pool → `{as_list(mx)}` · "
                    f"average pool → `{as_list(av)}`")
st.caption("Defaults: the slide's 4×4 grid with a 2×2 window and stride 2 → [[6, 8], [3, 4]]. Pooling has no "
           "parameters; average pooling is what LeNet used, max pooling what VGG uses.")

# -- softmax --------------------------------------------------------------------------------------------------
st.subheader("Softmax", anchor="softmax", divider="gray")
c = st.columns([2, 1])
raw = c[0].text_input("Logits (comma separated)", "2.0, 1.0, 0.1", key="calc.logits",
                      help="The network's raw outputs, one per class.")
temp = c[1].slider("Temperature T", 0.1, 5.0, 1.0, 0.1, key="calc.temp",
                   help="softmax(z / T): T < 1 sharpens, T > 1 flattens; T = 1 is the ordinary softmax.")
parts = [t.strip() for t in raw.replace(";", ",").split(",") if t.strip()]
try:
    logits = [float(t) for t in parts]
    if not all(math.isfinite(z) for z in logits):
        raise ValueError
except ValueError:
    st.error("Write the logits as numbers separated by commas, for example 2.0, 1.0, 0.1.", icon=":material/error:")
else:
    if not logits:
        st.error("Write at least one logit, for example 2.0, 1.0, 0.1.", icon=":material/error:")
    else:
        probs = ar.softmax([z / temp for z in logits])
        exps = [math.exp(z / temp) for z in logits]
        # The logits as typed ("2.0", not "2"), as the slide writes them.
        powers = [rf"e^{{{t}}}" if temp == 1 else rf"e^{{{t}/{temp:g}}}" for t in parts]
        denom, first = " + ".join(powers), powers[0]
        st.latex(rf"\operatorname{{softmax}}(z)_i = \frac{{e^{{z_i{'' if temp == 1 else '/T'}}}}}"
                 rf"{{\sum_j e^{{z_j{'' if temp == 1 else '/T'}}}}} \qquad p_1 = \frac{{{first}}}{{{denom}}} = "
                 rf"\frac{{{exps[0]:.2f}}}{{{' + '.join(f'{x:.2f}' for x in exps)}}} = {probs[0]:.2f}")
        rounded = ", ".join(f"{p_:.2f}" for p_ in probs)
        st.markdown(f"`[{', '.join(parts)}]` → **[{rounded}]**"
                    + ("" if temp == 1 else f" at temperature {temp:g}") + f" · sum = {sum(probs):.2f}")
        table = pd.DataFrame({"class": [str(i + 1) for i in range(len(logits))], "logit z": logits,
                              "exp(z/T)" if temp != 1 else "exp(z)": exps, "probability": probs})
        c = st.columns([1, 1.4])
        c[0].dataframe(table, hide_index=True, key="calc.softmax_table", column_config={
            "logit z": st.column_config.NumberColumn(format="%.2f"),
            table.columns[2]: st.column_config.NumberColumn(format="%.2f"),
            "probability": st.column_config.NumberColumn(format="%.2f")})
        bar = go.Figure(go.Bar(x=table["class"], y=probs, marker_color="#1a73e8",
                               text=[f"{p_:.2f}" for p_ in probs], textposition="outside"))
        bar.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=30), font=dict(size=15),
                          yaxis=dict(range=[0, 1.1], title_text="probability"),
                          xaxis=dict(title_text="class", type="category"))
        c[1].plotly_chart(bar, config={"displayModeBar": False}, key="calc.softmax_chart")
st.caption("Defaults: the slide's logits [2.0, 1.0, 0.1] → [0.66, 0.24, 0.10]. The probabilities are positive "
           "and sum to 1; the largest logit gets the largest share.")

# -- RoI pooling ----------------------------------------------------------------------------------------------
st.subheader("RoI pooling", anchor="roi-pooling", divider="gray")
st.markdown("Fast R-CNN pools every region proposal to one size: the region (a box of feature-map cells) is split "
            "into as many parts as the output has cells, and each part gives its maximum.")


def roi_figure(grid: list, bins: list, box: tuple):
    """The map with each bin's cells tinted in its own colour inside a border, and its maximum ringed; bins that
    share a cell (torchvision's) show it twice tinted."""
    n_rows, n_cols = len(grid), len(grid[0])
    cell = lambda v: f"{v:.2f}" if round(v, 2) == v else ui.fmt_num(v)  # as the editor shows it: 0.70, not 0.7
    fig = go.Figure(go.Heatmap(z=[[0] * n_cols] * n_rows, text=[[cell(v) for v in row] for row in grid],
                               texttemplate="%{text}", textfont=dict(size=14), colorscale=[[0, "white"], [1, "white"]],
                               showscale=False, xgap=2, ygap=2, hoverinfo="skip"))
    x1, y1, x2, y2 = box
    fig.add_shape(type="rect", x0=x1 - 0.5, x1=x2 + 0.5, y0=y1 - 0.5, y1=y2 + 0.5, line=dict(color="#222", width=1,
                                                                                            dash="dot"))
    flat = [b for row in bins for b in row]
    ringed: dict = {}  # cell -> rings drawn on it: a maximum two overlapping bins share gets two nested rings
    for k, b in enumerate(flat):
        colour = qualitative.D3[k % len(qualitative.D3)]
        fill = "rgba({}, {}, {}, 0.22)".format(*hex_to_rgb(colour))
        fig.add_shape(type="rect", x0=b.cols.start - 0.5, x1=b.cols.stop - 0.5, y0=b.rows.start - 0.5,
                      y1=b.rows.stop - 0.5, line=dict(color=colour, width=3), fillcolor=fill, layer="above")
        top = [(r, c) for r, c in b.cells if grid[r][c] == b.value]
        if top:
            r, c = top[0]
            inner = ringed[(r, c)] = ringed.get((r, c), -1) + 1
            fig.add_trace(go.Scatter(x=[c], y=[r], mode="markers", showlegend=False,
                                     marker=dict(symbol="circle-open", size=34 - 8 * inner, color=colour,
                                                 line=dict(width=3)),
                                     hovertemplate=f"bin {k // len(bins[0]) + 1},{k % len(bins[0]) + 1}: "
                                                   f"max {ui.fmt_num(b.value)}<extra></extra>"))
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="#bdbdbd", font=dict(size=14),
                      xaxis=dict(title_text="x (column)", side="top", dtick=1, showgrid=False, zeroline=False,
                                 range=[-0.5, n_cols - 0.5], constrain="domain"),  # square cells, no margin
                      yaxis=dict(title_text="y (row)", range=[n_rows - 0.5, -0.5], dtick=1, showgrid=False,
                                 zeroline=False, scaleanchor="x", constrain="domain"))
    return fig


def span(cells: range) -> str:
    return f"{cells.start}" if len(cells) == 1 else f"{cells.start}–{cells.stop - 1}"


c = st.columns([1.45, 1], gap="medium")
with c[0]:
    st.markdown("**Feature map** (click a cell to edit; rows y, columns x)")
    roi_edited = st.data_editor(
        pd.DataFrame(ar.ROI_EXAMPLE_MAP, columns=[str(j) for j in range(8)]), key="calc.roi_map",
        column_config={str(j): st.column_config.NumberColumn(str(j), width=55, required=True, format="%.2f")
                       for j in range(8)})
with c[1]:
    st.markdown("**Region** (inclusive feature-map cells) and **output size**")
    box_cols = st.columns(2)
    ex1, ey1, ex2, ey2 = ar.ROI_EXAMPLE_BOX
    rx1 = int(box_cols[0].number_input("x1 (first column)", 0, 7, ex1, key="calc.roi_x1"))
    ry1 = int(box_cols[1].number_input("y1 (first row)", 0, 7, ey1, key="calc.roi_y1"))
    rx2 = int(box_cols[0].number_input("x2 (last column)", 0, 7, ex2, key="calc.roi_x2"))
    ry2 = int(box_cols[1].number_input("y2 (last row)", 0, 7, ey2, key="calc.roi_y2"))
    out_h = int(box_cols[0].number_input("Output rows", 1, 8, ar.ROI_EXAMPLE_OUTPUT[0], key="calc.roi_out_h"))
    out_w = int(box_cols[1].number_input("Output columns", 1, 8, ar.ROI_EXAMPLE_OUTPUT[1], key="calc.roi_out_w"))
roi_df = roi_edited.apply(pd.to_numeric, errors="coerce")
roi_box, roi_out = (rx1, ry1, rx2, ry2), (out_h, out_w)
if roi_df.isna().any().any():
    st.error("Every cell of the feature map needs a number: fill in the empty cells.", icon=":material/error:")
else:
    roi_grid = [[float(v) for v in row] for row in roi_df.to_numpy()]
    try:
        lecture = ar.roi_pool(roi_grid, roi_box, roi_out, "lecture")
        tv_bins = ar.roi_pool(roi_grid, roi_box, roi_out, "torchvision")
        tv_values = ar.torchvision_roi_pool(roi_grid, roi_box, roi_out)  # torchvision itself, beside our bins
    except ValueError as e:
        st.error(esc(e), icon=":material/error:")
    else:
        h, w = ry2 - ry1 + 1, rx2 - rx1 + 1
        labels = [str(j + 1) for j in range(out_w)]
        cols = st.columns(2, gap="medium")
        for col, title, bins, values, key in (
                (cols[0], "As the lecture divides the box", lecture, [[b.value for b in r] for r in lecture],
                 "calc.roi_lecture"),
                (cols[1], "torchvision.ops.roi_pool", tv_bins, tv_values, "calc.roi_torchvision")):
            with col:
                st.markdown(f"**{title}**")
                st.plotly_chart(roi_figure(roi_grid, bins, roi_box), config={"displayModeBar": False},
                                key=f"{key}_chart")
                st.markdown(" · ".join(f"rows {span(b.rows)} × columns {span(b.cols)}: **{ui.fmt_num(b.value)}**"
                                       for r in bins for b in r))
                st.dataframe(pd.DataFrame(values, columns=labels), hide_index=True, key=key, width="content",
                             column_config={lab: st.column_config.NumberColumn(lab, width=60, format="%.2f")
                                            for lab in labels})
        rows_split = " + ".join(str(len(r)) for r in ar.roi_axis_bins(ry1, ry2, out_h))
        cols_split = " + ".join(str(len(r)) for r in ar.roi_axis_bins(rx1, rx2, out_w))
        st.markdown(f"The region is {h} row{'s' * (h != 1)} × {w} column{'s' * (w != 1)}: the lecture splits it "
                    f"into near-equal parts that tile it (part i starts ⌊i·{h}/{out_h}⌋ rows in, columns "
                    f"likewise) — rows {rows_split}, columns {cols_split} — and each part gives its maximum.")
        shared_rows = sorted({i for a, b_ in zip(tv_bins, tv_bins[1:]) for i in set(a[0].rows) & set(b_[0].rows)})
        shared_cols = sorted({j for a, b_ in zip(tv_bins[0], tv_bins[0][1:]) for j in set(a.cols) & set(b_.cols)})
        lecture_values = [[b.value for b in r] for r in lecture]
        shared = " and ".join(part for part in (
            f"row{'s' * (len(shared_rows) > 1)} {', '.join(map(str, shared_rows))}" if shared_rows else "",
            f"column{'s' * (len(shared_cols) > 1)} {', '.join(map(str, shared_cols))}" if shared_cols else "")
            if part)
        if not shared:
            st.success("torchvision's bins are the lecture's here: the output size divides the region evenly.",
                       icon=":material/check:")
        else:
            outcome = ("so its maxima differ: "
                       + ", ".join(f"bin ({i + 1}, {j + 1}) {ui.fmt_num(tv_values[i][j])} instead of "
                                   f"{ui.fmt_num(lecture_values[i][j])}"
                                   for i in range(out_h) for j in range(out_w)
                                   if tv_values[i][j] != lecture_values[i][j])
                       if tv_values != lecture_values else "though the maxima agree on this map")
            st.info(f"torchvision's roi_pool rounds the box to whole cells and gives bin i the cells ⌊i·{h}/{out_h}⌋ "
                    f"to ⌈(i+1)·{h}/{out_h}⌉ − 1 of the box (columns likewise), so where the output does not divide "
                    f"the region neighbouring bins share cells — here {shared} — {outcome}.",
                    icon=":material/info:")
st.caption("Defaults: the lecture's example (the deepsense.ai illustration): an 8×8 feature map, the region x 0–6, "
           "y 3–7 (7 columns × 5 rows) and a 2×2 output — rows 2 + 3, columns 3 + 4 → [[0.85, 0.84], [0.97, 0.96]].")
