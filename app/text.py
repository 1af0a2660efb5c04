"""The teaching text beside every view: what is shown, how it is computed, what to look for."""

from __future__ import annotations

PAPER = ("He, Deng, Qiao, *Dynamic Multi-Scale Filters for Semantic Segmentation*, ICCV 2019 "
         "([paper](https://openaccess.thecvf.com/content_ICCV_2019/papers/He_Dynamic_Multi-Scale_"
         "Filters_for_Semantic_Segmentation_ICCV_2019_paper.pdf), [mmsegmentation config]"
         "(https://github.com/open-mmlab/mmsegmentation/tree/main/configs/dmnet))")

INTRO = f"""# DMNet Explorer
How DMNet's **dynamic multi-scale filters** adapt to *your* image. For each filter size k, DMNet
pools the image's features to k×k, turns the pooled map into one k×k filter per channel, and
convolves the features with those filters. The filters are computed from the image: a different
image gets different filters. — {PAPER}"""

INPUTS = """Upload, paste or photograph an image, pick an example, or **generate a scene** from
ContextShapes, the demo model's synthetic data: pictures in a striped or a checked frame, and an
object's class is its shape *and* the frame ("disk, striped frame" is not "disk, checked
frame"). The frame is far from most objects, so the model must carry what it sees there to every
pixel: that is what DMNet's image-dependent filters do. Each scene has its own object size, and
colours do not give the class away. A generated scene comes with its **true mask**, so every
view can show where the prediction is right. (A model trained on other synthetic data,
MultiScaleShapes or PatternMatch, gets scenes of its own data; a model of a real dataset gets a
ContextShapes picture without a mask.)"""

SEGMENT = f"""**What you see.** The prediction of the whole network, blended over the image.
Hover a class in the legend to highlight it, or click it (or pick it below) to dim the others.
The bars give each class's share of the pixels and, with a true mask, its IoU (intersection over
union of predicted and true pixels).

**How it is computed.** As mmsegmentation's test pipeline: the image is resized to the model's
test scale, the decode head's logits (at 1/8 resolution) are resized back bilinearly, and each
pixel takes its highest-scoring class. Images larger than the test scale are downscaled first.

Reference: {PAPER}."""

BRANCHES = f"""**One column per input of the bottleneck.** DMNet concatenates the backbone
features **x** with the outputs of four Dynamic Convolutional Modules (DCMs), one per filter size
k = 1, 3, 5, 7. In each DCM:
1. **Pooling grid** — x is average-pooled to k×k. The grid over the image shows the bins; where
   the feature size is not divisible by k the bins overlap (darker bands), exactly as
   `adaptive_avg_pool2d` does.
2. **Generated filters** — a 1×1 conv maps each pooled cell to one tap of a k×k filter *per
   channel*. The heatmap shows one channel's filter; the colour scale is shared by all columns.
   The two panels split it: the **mean** filter (its average over the model's fixed reference
   images, the same for every image) and the **dynamic part** (what this image adds), on one
   colour scale. The channel picker lists channels by how much their dynamic part varies
   across the reference images: the top ones are the most *dynamic*.
3. **Activations** — x, reduced by a 1×1 conv, is convolved depthwise: channel c with its own
   filter, the same at every position. The maps show the output's channel mean and the chosen
   channel, over the pixels each feature cell sees.
4. **Without it** — the pixels that change class when this input is taken away (set to zero)
   and the rest of the network runs as before, drawn in their new class colour over a faded
   image. The line under it says how many pixels change and, with a true mask, how much the
   accuracy on small and large objects drops: a branch that matters for large objects costs
   accuracy there.

For k = 1 the "filter" is one number per channel: a gain computed from the global average of the
image. Larger k keep more of the layout of the context in the filter, but the layout shows only
where the features vary: over a patch where a channel is flat, a k×k filter gives that value
times the sum of its taps, and the taps sum to a gain from the mean of the k×k grid, which is
(close to) the global average of k = 1. So what only a larger k adds lies at edges and textures.

Reference: {PAPER}."""

SKIP_COLUMN = """**x** is the backbone's last feature map. It reaches the bottleneck
unchanged, next to the four DCM outputs: no filter is generated for it. Below: its channel
mean, the size of its contribution to the bottleneck, and what changes without it."""

ATTRIBUTION = f"""**Which input decides each pixel.** Before the classifier, DMNet adds up
what five inputs say about every pixel: the backbone features **x** and the four branches
**k = 1, 3, 5, 7**. For each pixel the network's vote for its class over the runner-up (the
*margin*) is exactly a sum of one term per input, plus a constant. The map colours each pixel by
the input with the largest term: the one that decided it. It is drawn at the resolution the
head works at (one square per feature cell, 1/8 of the input), in the inputs' own colours; the
slider puts the image under it, a click on an input in the legend shows only the pixels it
decides, the class buttons show only the pixels of one class, and the
table counts, for every class, which input decides its pixels. **Point at a pixel**: the bars
beside the map show each input's term for the cell under the pointer (framed on the map) as you
move; a click pins a cell (the plot below). A tall positive bar pushed the pixel towards its
class, a negative one pushed against it. Pointing at the changed pixels of an ablation says what
the cell was, what it became, and the terms it had (the removed inputs struck through).

**Ablation.** Remove inputs (or keep only some): their share is set to zero, as if the branch
had output nothing, and the rest of the head runs again. Changed pixels are shown in their new
class colour; the table lists each class's share before and after (and IoU with a true mask).
**Static filters** keeps every input but replaces each generated filter by its average over a
few reference images: the same network with ordinary filters that no longer adapt to the
image. What changes then is what adapting to *this* image does. **Taps summed** moves all the
taps of the ticked branches' k×k filters (k > 1) to the centre: each channel keeps its gain for
this image (the filter's sum), not its shape. Where the features are flat across the filter the
shape cannot matter (the output is the sum times the value), so the changes, if any, sit at
edges and textures: what the k×k layout adds.

How it is exact: the bottleneck is a 3×3 conv over the concatenation [x, k=1, k=3, k=5, k=7],
then BatchNorm, then ReLU. A conv is linear, so it splits into one conv per input; BatchNorm (in
evaluation) scales each channel and adds a shift once; for this image the ReLU's on/off pattern
is fixed, and the classifier is linear.

Reference: {PAPER}."""

ROLES = """**Which branch matters for large vs small objects.** With a true mask (a generated scene
or an example that has one), the objects of the image are sorted by size as in the model card:
tiny (under 1/16 of the image side), small (to 1/8), medium (to 1/4) and large. For each size the
left plot shows which input decides their pixels, the right one how much of their pixels stop
being right when one input is removed. An object is a connected patch of one class in the true
mask; its size is twice the largest distance from its centre to its edge."""

COMPARE = f"""**Adaptation, made visible.** Every generated filter is the sum of two parts:
the **mean** filter (the same for every image: its average over a fixed set of reference
images, named in the model's status line at the top left) and the **dynamic part** (what this
image changed). The mean is the same for A and B and often the larger part, so raw filters of two
images can look alike even when the images changed them in opposite ways (a model whose filters
barely adapt gives raw cosines of 0.95–1.0). That is why the plots here compare only the dynamic
parts: the panel shows the mean and A's and B's dynamic parts on one colour scale, and the line
plot gives, for every channel of every branch, the cosine of A's and B's dynamic parts: 1 = they
push the filter the same way, 0 = unrelated, −1 = opposite ways (for k = 1 the dynamic part is a
single number, so its cosine is only +1 or −1). The table gives both cosines, raw and dynamic,
so you can see how much the mean hides.

Reference: {PAPER}."""

TRANSPLANT = """**Filter transplant: what do the adapted filters do?** Run image B with the filters
that DMNet generated for image A (in one branch, or in all of them), or the other way round.
Everything else is B's own: its features, its other branches. Pixels that change class (shown in
their new colour) were decided by the adaptation to the image. As a yardstick, the second
picture gives B with the *static* mean filters in the same branches: no adaptation at all. If
A's filters change many pixels, the filters really are specific to the image they came from."""

SWEEP = f"""**Scale sweep.** The model input (the image at the model's test scale, exactly as the
Segmentation tab feeds it) is resized from 0.5× to 2×, so objects really appear smaller or
larger. The pooled context changes with the scale, so the generated filters change. Move the
slider (or press ▶) to step through the scales: the prediction, and for each branch the chosen
channel (from the Branches tab) as its mean filter and its dynamic part at that scale, with the
cosine of that scale's dynamic part to the one at 1×. The line plots give the same cosine for
every branch and how many pixels keep their 1× class (and the mIoU against a true mask). Stop
cancels the sweep between scales.

Reference: {PAPER}."""

ABOUT = f"""## About DMNet
DMNet (Dynamic Multi-scale Network) segments an image with a dilated ResNet backbone (output
stride 8) and a head of parallel **Dynamic Convolutional Modules** (DCMs). Where earlier
multi-scale heads use fixed filters of several sizes, dilation rates or pooling grids, a DCM
*generates* its filters from the input: the features are average-pooled to k×k and a 1×1
convolution turns the pooled map into one k×k filter per channel. The features, reduced by a 1×1
convolution, are then convolved depthwise with these filters (each channel with its own filter),
normalised and rectified. The outputs of the DCMs (k = 1, 3, 5, 7 in the published models) are
concatenated with the backbone features and fused by a 3×3 convolution before the classifier.

This app runs a plain-PyTorch DMNet that loads mmsegmentation's checkpoints unchanged: the
bundled demo model (a small ResNet-18 DMNet trained on ContextShapes) or the 12 official
Cityscapes and ADE20K models. Every view comes from one forward pass (`DMNet.inspect`).

{PAPER}"""
