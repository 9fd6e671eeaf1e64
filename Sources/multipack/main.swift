import MultipackKit
print(Masking.url("https://u:p@h/x?y=1"))
