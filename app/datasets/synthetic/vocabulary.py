"""The catalogue's words: per-category vocabularies and base prices, brands and price tiers.

Titles and descriptions are built from a category's nouns, adjectives, materials, features and
uses, so TF-IDF similarity is high inside a category and low across.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Category:
    """A product category: its name, base price and the words its items are described with."""

    name: str
    base_price: float
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]


# fmt: off
CATEGORIES: tuple[Category, ...] = (
    Category(
        "Kitchen & Dining", 18.0,
        ("teapot", "chopping board", "mixing bowl", "mug", "cake tin", "salad bowl",
         "cutlery set", "lunch box", "spice rack", "frying pan", "coffee grinder", "serving tray"),
        ("rustic", "enamel", "stackable", "non-stick", "retro", "nordic"),
        ("stoneware", "oak", "stainless steel", "bamboo", "cast iron", "porcelain"),
        ("dishwasher safe", "with a heat-resistant handle", "with a non-slip base",
         "oven safe to 220 degrees"),
        ("for weekend baking", "for family dinners", "for the morning coffee ritual",
         "for meal prep and leftovers"),
    ),
    Category(
        "Home Decor", 25.0,
        ("photo frame", "wall clock", "vase", "cushion cover", "mirror", "wall art print",
         "candle holder", "throw blanket", "doorstop", "ornament", "storage basket", "rug"),
        ("vintage", "scandinavian", "botanical", "geometric", "boho", "hand-painted"),
        ("rattan", "linen", "glass", "velvet", "ceramic", "brass"),
        ("with a hanging hook", "in muted earthy tones", "with a hand-finished texture",
         "that complements any interior"),
        ("for the living room", "for a cosy bedroom", "to brighten a hallway",
         "as a housewarming gift"),
    ),
    Category(
        "Garden & Outdoor", 30.0,
        ("plant pot", "watering can", "bird feeder", "garden hose", "pruning shears",
         "seed tray", "solar lantern", "deck chair", "trowel", "compost bin", "hanging basket",
         "raised bed"),
        ("weatherproof", "galvanised", "foldable", "self-watering", "heavy-duty", "hand-forged"),
        ("terracotta", "zinc", "recycled plastic", "acacia wood", "carbon steel", "wicker"),
        ("UV resistant", "with drainage holes", "rust proof", "frost resistant"),
        ("for balcony gardens", "for growing herbs and vegetables", "for summer evenings outside",
         "for attracting garden birds"),
    ),
    Category(
        "Toys & Games", 20.0,
        ("jigsaw puzzle", "board game", "building blocks", "plush bear", "toy train",
         "dolls house", "kite", "card game", "marble run", "play tent", "wooden rocket",
         "science kit"),
        ("educational", "colourful", "classic", "magnetic", "wooden", "interactive"),
        ("beech wood", "soft fleece", "cardboard", "recycled plastic", "felt", "cotton"),
        ("for ages 3 and up", "with easy-to-follow rules", "with rounded safe edges",
         "that packs away neatly"),
        ("for family game night", "for rainy afternoons", "for creative play",
         "as a birthday present"),
    ),
    Category(
        "Stationery & Office", 8.0,
        ("notebook", "fountain pen", "desk organiser", "washi tape", "planner", "pencil case",
         "greeting card", "sticky notes", "sketchbook", "gift wrap", "envelope set", "ruler"),
        ("dotted", "recycled", "pastel", "minimalist", "refillable", "illustrated"),
        ("kraft paper", "leather", "cork", "aluminium", "acid-free paper", "card"),
        ("with lay-flat binding", "in A5 size", "with 120 gsm pages", "with a ribbon bookmark"),
        ("for journaling", "for the home office", "for back to school",
         "for thank-you notes and letters"),
    ),
    Category(
        "Electronics", 80.0,
        ("wireless earbuds", "bluetooth speaker", "phone charger", "smart plug", "webcam",
         "power bank", "usb hub", "fitness tracker", "e-reader", "keyboard", "mouse",
         "headphones"),
        ("wireless", "noise-cancelling", "fast-charging", "compact", "ergonomic", "smart"),
        ("aluminium", "matte plastic", "tempered glass", "silicone", "carbon fibre",
         "braided nylon"),
        ("with 20-hour battery life", "with usb-c charging", "bluetooth 5.3 compatible",
         "with voice assistant support"),
        ("for commuting", "for working from home", "for gaming sessions",
         "for staying connected on the go"),
    ),
    Category(
        "Books", 14.0,
        ("novel", "cookbook", "travel guide", "biography", "poetry collection", "atlas",
         "picture book", "history book", "self-help book", "crime thriller", "fantasy saga",
         "graphic novel"),
        ("bestselling", "award-winning", "illustrated", "hardback", "paperback", "signed"),
        ("cloth-bound", "gift edition", "large print", "pocket edition", "collector edition",
         "first edition"),
        ("with a foreword by the author", "with colour photographs", "with 300 pages",
         "translated from the original"),
        ("for long train journeys", "for book club discussions", "for curious young readers",
         "for a quiet weekend of reading"),
    ),
    Category(
        "Beauty & Personal Care", 16.0,
        ("face serum", "hand cream", "shampoo bar", "lip balm", "body lotion", "bath salts",
         "hair brush", "face mask", "perfume", "nail polish", "beard oil", "sunscreen"),
        ("organic", "vegan", "fragrance-free", "hydrating", "soothing", "cruelty-free"),
        ("aloe vera", "shea butter", "argan oil", "rose water", "vitamin c", "charcoal"),
        ("dermatologically tested", "suitable for sensitive skin", "in a recyclable bottle",
         "free from parabens"),
        ("for a daily skincare routine", "for a relaxing bath", "for dry winter skin",
         "as a pamper gift"),
    ),
    Category(
        "Sports & Fitness", 35.0,
        ("yoga mat", "water bottle", "resistance bands", "dumbbells", "running belt",
         "foam roller", "jump rope", "gym bag", "cycling gloves", "tennis balls", "kettlebell",
         "swim goggles"),
        ("lightweight", "anti-slip", "adjustable", "breathable", "insulated", "professional"),
        ("natural rubber", "neoprene", "cast iron", "tpe foam", "mesh", "stainless steel"),
        ("sweat resistant", "with a carry strap", "with adjustable resistance levels",
         "tested for durability"),
        ("for home workouts", "for marathon training", "for the gym", "for outdoor adventures"),
    ),
    Category(
        "Women's Fashion", 40.0,
        ("wrap dress", "knit cardigan", "silk scarf", "blouse", "denim jacket", "midi skirt",
         "ankle boots", "trench coat", "jumpsuit", "linen trousers", "sandals", "beret"),
        ("floral", "tailored", "oversized", "relaxed fit", "pleated", "classic"),
        ("organic cotton", "merino wool", "silk", "linen", "denim", "suede"),
        ("machine washable", "with side pockets", "in sizes 6 to 20", "with a flattering cut"),
        ("for the office", "for summer holidays", "for evenings out", "for everyday wear"),
    ),
    Category(
        "Men's Fashion", 40.0,
        ("oxford shirt", "chinos", "wool jumper", "leather belt", "bomber jacket", "polo shirt",
         "trainers", "overcoat", "hoodie", "flat cap", "swim shorts", "suit jacket"),
        ("slim fit", "heritage", "waterproof", "brushed", "casual", "tailored"),
        ("cotton twill", "lambswool", "full-grain leather", "tweed", "fleece", "canvas"),
        ("with reinforced seams", "in sizes S to XXL", "with a modern cut",
         "pre-washed for softness"),
        ("for the weekend", "for smart occasions", "for cold mornings", "for travel"),
    ),
    Category(
        "Jewellery & Watches", 55.0,
        ("necklace", "earrings", "bracelet", "ring", "wristwatch", "pendant", "cufflinks",
         "anklet", "brooch", "charm", "hair clip", "jewellery box"),
        ("dainty", "hammered", "minimalist", "engraved", "statement", "gold-plated"),
        ("sterling silver", "rose gold", "freshwater pearl", "18k gold", "titanium",
         "recycled silver"),
        ("hypoallergenic", "with a gift box", "nickel free", "with an adjustable chain"),
        ("for anniversaries", "for everyday elegance", "as a bridesmaid gift",
         "to mark a special birthday"),
    ),
    Category(
        "Pet Supplies", 15.0,
        ("dog bed", "cat scratcher", "pet bowl", "dog lead", "chew toy", "cat tree",
         "grooming brush", "pet carrier", "bird cage", "aquarium filter", "dog coat",
         "treat pouch"),
        ("orthopaedic", "durable", "washable", "reflective", "interactive", "calming"),
        ("memory foam", "sisal rope", "natural rubber", "nylon webbing", "ceramic", "canvas"),
        ("non-toxic", "easy to clean", "suitable for large breeds", "vet recommended"),
        ("for puppies and kittens", "for long walks", "for indoor cats", "for a restful sleep"),
    ),
    Category(
        "Party & Seasonal", 7.0,
        ("bunting", "party balloons", "paper napkins", "christmas bauble", "advent calendar",
         "gift tags", "party hats", "easter egg", "string lights", "cake toppers",
         "halloween mask", "confetti"),
        ("festive", "glittery", "personalised", "metallic", "rainbow", "eco-friendly"),
        ("paper", "foil", "biodegradable latex", "glass", "tissue", "felt"),
        ("pack of 12", "pack of 24", "with ribbon included", "reusable year after year"),
        ("for birthday parties", "for christmas decorating", "for a baby shower",
         "for wedding celebrations"),
    ),
    Category(
        "Bags & Travel", 45.0,
        ("backpack", "tote bag", "suitcase", "wash bag", "passport holder", "weekend holdall",
         "crossbody bag", "laptop sleeve", "luggage tag", "travel pillow", "wallet", "duffel"),
        ("water-resistant", "lightweight", "expandable", "anti-theft", "vegan leather",
         "cabin-size"),
        ("waxed canvas", "ripstop nylon", "full-grain leather", "recycled polyester", "cork",
         "polycarbonate"),
        ("with a padded laptop compartment", "with spinner wheels", "with rfid protection",
         "with a lifetime warranty"),
        ("for city breaks", "for the daily commute", "for long-haul flights",
         "for weekend getaways"),
    ),
    Category(
        "Lighting", 32.0,
        ("table lamp", "floor lamp", "pendant shade", "fairy lights", "desk lamp",
         "night light", "wall sconce", "lantern", "led bulb", "ceiling light", "reading light",
         "salt lamp"),
        ("dimmable", "industrial", "warm white", "art deco", "rechargeable", "mid-century"),
        ("brass", "opal glass", "rattan", "concrete", "matte black metal", "paper"),
        ("with an energy-saving led", "with a touch dimmer", "with a braided fabric cable",
         "with a weighted base"),
        ("for reading corners", "for a soft evening glow", "for the home office",
         "for outdoor dining"),
    ),
)

# fmt: on

BRANDS: tuple[str, ...] = (
    "Northwind",
    "Ashby & Co",
    "Maple Lane",
    "Oakridge",
    "Bright Harbour",
    "Little Finch",
    "Copperleaf",
    "Greystone",
    "Willow & Wren",
    "Blue Fern",
    "Tidewater",
    "Juniper Home",
)
TIERS: tuple[str, ...] = ("budget", "standard", "premium")
TIER_PRICE = np.array([0.55, 1.0, 2.1])
