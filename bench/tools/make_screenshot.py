from PIL import Image, ImageDraw, ImageFont
import random
random.seed(7)
W, H = 1080, 2400
im = Image.new("RGB", (W, H), (245, 246, 250))
d = ImageDraw.Draw(im)
try:
    font = ImageFont.load_default(size=40); small = ImageFont.load_default(size=28)
except TypeError:
    font = small = ImageFont.load_default()
# status bar
d.rectangle([0, 0, W, 90], fill=(30, 30, 40))
d.text((40, 25), "12:34", fill="white", font=font)
d.text((W - 260, 25), "5G  87%", fill="white", font=font)
# app bar + search
d.rectangle([0, 90, W, 260], fill=(25, 118, 210))
d.text((40, 140), "Messages", fill="white", font=font)
d.rounded_rectangle([40, 290, W - 40, 400], radius=55, fill=(255, 255, 255), outline=(200, 200, 210), width=3)
d.text((110, 322), "Search conversations", fill=(120, 120, 130), font=font)
# list rows
y = 440
for i in range(12):
    c = tuple(random.randint(60, 220) for _ in range(3))
    d.ellipse([40, y + 15, 170, y + 145], fill=c)
    d.text((80, y + 55), chr(65 + i), fill="white", font=font)
    d.text((200, y + 25), f"Contact {i+1}", fill=(20, 20, 20), font=font)
    d.text((200, y + 85), "Hey, are we still on for tomorrow? " + "x" * (i % 5), fill=(110, 110, 110), font=small)
    d.text((W - 170, y + 30), f"{9 + i % 12}:{(i * 7) % 60:02d}", fill=(110, 110, 110), font=small)
    d.line([200, y + 158, W, y + 158], fill=(225, 225, 230), width=2)
    y += 160
# FAB
d.ellipse([W - 220, H - 420, W - 60, H - 260], fill=(25, 118, 210))
d.text((W - 155, H - 365), "+", fill="white", font=font)
# nav bar
d.rectangle([0, H - 140, W, H], fill=(250, 250, 250))
for k, x in enumerate([W // 6, W // 2, 5 * W // 6]):
    d.rounded_rectangle([x - 50, H - 100, x + 50, H - 40], radius=14, outline=(60, 60, 60), width=5)
im.save("screen_1080x2400.png")
im.resize((540, 1200), Image.BICUBIC).save("screen_540x1200.png")
print("ok")
