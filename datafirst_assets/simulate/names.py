"""Embedded name, street and company word lists (no network at run time).

Lists are ordered roughly by popularity: the simulator turns rank into a Zipf-like frequency,
so the first names of each list are the common ones. Names are spelt as their bearers write
them, accents included (Siobhán, Zoë, Łukasz, Nguyễn), and systems that cannot store an accent
drop it when recording (see ``ErrorProfile.diacritics_dropped``). Each list belongs to a *name origin*
(the pool a person's names are drawn from), which the simulator ties to ethnicity and uses as
a subgroup for recording-error rates (transliteration, name order).
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    """Whitespace separated words, de-duplicated keeping first occurrence."""
    return tuple(dict.fromkeys(text.split()))


NAME_ORIGINS = (
    "anglo",
    "caribbean",
    "south_asian_muslim",
    "south_asian_indic",
    "west_african",
    "somali_arabic",
    "east_european",
    "east_asian",
)

# ------------------------------------------------------------------------------------------
# Forenames by origin and sex
# ------------------------------------------------------------------------------------------
ANGLO_MALE = _words("""
James John David Michael Daniel Thomas Christopher Paul Mark Andrew Robert Matthew Richard Lee
Ryan Adam Steven Jamie Craig Liam Stephen Dean Kevin Scott Darren Gary Wayne Martin Anthony
Peter Jason Joseph Luke Shaun Ben Carl Sean Seán Kieran Jack Joshua Aaron Nathan Callum Jordan
Connor Lewis Jake Samuel William Ashley Simon Neil Stuart Ian Alan Brian Keith Colin Graham
Philip Nicholas Jonathan Alexander Benjamin George Harry Charlie Oliver Jacob Tyler Bradley
Kyle Reece Dale Gavin Jon Barry Terry Kenneth Raymond Gordon Roy Dennis Trevor Derek Leslie
Malcolm Norman Ronald Donald Edward Henry Charles Frank Patrick Francis Gerard Declan Dónal Conor
Ciaran Ciarán Niall Dominic Mason Ethan Dylan Owen Rhys Gareth Dafydd Huw Iwan Aled Ewan Fraser
Hamish Angus Alistair Duncan Ross Grant Glen Lloyd Leon Marcus Troy Shane Damien Nathaniel
Elliot Harvey Alfie Archie Freddie Toby Max Louis Joel Reuben Theo Zachary Kai Brandon Jay
Jayden Tony Vincent Victor Howard Clive Nigel Russell Adrian Julian Timothy Gregory Jeremy
Christian Mitchell Billy Bobby Danny Johnny Tommy Stanley Albert Arthur Frederick Ernest
Harold Walter Leonard Sidney Douglas Graeme Kirk Warren Wesley Rory Stewart Karl Jeffrey
Geoffrey Phillip Brett Curtis Aidan Bailey Cameron Morgan Harley Riley Logan Spencer Joe Sam
Alex Elliott Luca Noah Oscar Leo Finley Jenson Lucas Isaac Edwin Rodney Roger Dominik Eric
Jimmy Mick Steve Jim Neville Barrie Lenny Ricky Robbie Jacky Gerald Lawrence Terence Ralph
""")

ANGLO_FEMALE = _words("""
Sarah Emma Laura Gemma Claire Lisa Michelle Nicola Kelly Rebecca Amy Samantha Stacey Hayley
Jennifer Rachel Natalie Danielle Charlotte Jessica Sophie Hannah Lauren Chloe Chloë Emily Katie Jade
Amanda Joanne Louise Helen Karen Julie Susan Elizabeth Victoria Stephanie Leanne Kerry Donna
Tracey Dawn Sharon Angela Deborah Caroline Jacqueline Catherine Katherine Kathryn Margaret
Patricia Christine Linda Janet Carol Sandra Pauline Elaine Alison Fiona Kirsty Lindsay Jodie
Zoe Zoë Abigail Holly Megan Bethany Georgia Olivia Amelia Isabella Ella Grace Lucy Molly Ellie
Jasmine Courtney Paige Shannon Chelsea Demi Leah Amber Eleanor Alice Anna Anne Ann Mary Jane
Joan Jean Barbara Brenda Gillian Wendy Diane Lorraine Maria Teresa Theresa Sheila Irene Doreen
Maureen Eileen Kathleen Bridget Siobhan Siobhán Aoife Niamh Aoibhín Ciara Sinead Sinéad Róisín Rhiannon Sian Bethan Ffion
Catrin Carys Jemma Kimberley Kim Toni Vicky Becky Jo Jenny Tina Mandy Joanna Rosie Poppy Evie
Freya Ruby Daisy Millie Phoebe Imogen Harriet Florence Matilda Esme Esmé Isla Ava Mia Lily Scarlett
Summer Tia Keeley Kayleigh Lacey Rachael Sara Clare Nichola Tracy Lyndsey Vanessa Yvonne Denise
Beverley Marie Josephine Rose Ruth Esther Naomi Miriam Judith Dorothy Pamela Valerie Sylvia
Shirley Gail Hazel Heather Rosemary Lesley Nicole Natasha Tanya Sonia Melissa Hollie Kayla
Charlene Shauna Stacy Sally Debbie Kate Beth Cathy Abbie Ellen Eve Erin Caitlin Anita Katy
""")

CARIBBEAN_MALE = _words("""
Jermaine Tyrone Leroy Delroy Winston Marlon Clinton Desmond Errol Devon Dwayne Trevor Everton
Carlton Lloyd Denzel Kemar Andre Junior Rohan Omari Tyrese Kwame Ashani Dexter Linton Courtney
""")
CARIBBEAN_FEMALE = _words("""
Marcia Beverley Shanice Tanisha Keisha Monique Jolene Shereen Paulette Sharlene Yolanda Tamika
Janelle Simone Chantelle Charmaine Nadine Claudette Maxine Hyacinth Precious Aaliyah Jada Kiara
""")

SOUTH_ASIAN_MUSLIM_MALE = _words("""
Mohammed Muhammad Mohammad Ahmed Ali Hassan Hussain Imran Asif Tariq Zubair Bilal Usman Umar
Omar Adnan Amir Aamir Faisal Kamran Shahid Sajid Majid Khalid Abdul Abdullah Rashid Naveed
Nadeem Waqas Zeeshan Irfan Arif Atif Junaid Hamza Ibrahim Ismail Yusuf Idris Rizwan Saqib
Shoaib Tahir Tanveer Zahid Nasir Javed Iqbal Shabir Aftab Afzal Akram Anwar Arshad Ashraf
Azhar Haroon Rehan Sohail Suleman Wasim Yasir Zakir Shahzad Mahmood Saif Ayaan Rayyan Zain
Sufyan Mustafa Shakeel Mushtaq Jamil
""")
SOUTH_ASIAN_MUSLIM_FEMALE = _words("""
Fatima Aisha Ayesha Amina Khadija Maryam Zainab Sana Nadia Saima Shazia Rubina Nazia Sadia
Samina Tahira Yasmin Farah Hina Iqra Mehwish Rabia Sumaira Bushra Shabana Nasreen Parveen
Razia Shamim Sobia Uzma Naila Saira Amna Hafsa Laila Noor Zara Anisa Salma Asma Sabina
Rukhsana Shaheen Tasleem Halima Jannat Mariam Safa Alina Humaira Nabila Shaista Fozia
""")

SOUTH_ASIAN_INDIC_MALE = _words("""
Amit Rajesh Sanjay Anil Sunil Vijay Ravi Rakesh Deepak Manoj Ashok Ramesh Suresh Dinesh
Mahesh Vikram Arjun Rohit Rahul Nikhil Vikas Sandeep Gurpreet Harpreet Jaspreet Manpreet
Jasvinder Kuldeep Sukhwinder Baljit Balvinder Paramjit Harjinder Jagdeep Amandeep Ranjit
Satnam Gurdeep Hardeep Inderjit Jatinder Kiran Pardeep Rajinder Sunny Ajay Nitin Pankaj
Prakash Pradeep Hitesh Jignesh Ketan Mehul Nilesh Paresh Rajiv Sachin Tushar Vinod Krishna
Dev Aryan Ishaan Jai Karan Neel Rohan Yash Bhavesh Dilip
""")
SOUTH_ASIAN_INDIC_FEMALE = _words("""
Priya Pooja Anjali Neha Sunita Anita Kavita Rekha Meena Asha Geeta Seema Nisha Shilpa Sonia
Deepa Divya Jaspreet Harpreet Manpreet Gurpreet Amandeep Rajwinder Kulwinder Jasvir Parminder
Sukhjit Balbir Surinder Harjit Kamaljit Navdeep Simran Kiran Ravinder Hema Bhavna Dipti Komal
Mina Nita Rina Roshni Shreya Trupti Usha Varsha Ananya Diya Riya Aarti Alka Jyoti Lata Mala
Radha Sangeeta Vandana Manjit Rupinder
""")

WEST_AFRICAN_MALE = _words("""
Emmanuel Samuel Daniel Oluwaseun Olumide Adebayo Adewale Babatunde Chinedu Chukwuemeka Emeka
Ikechukwu Obinna Uche Nnamdi Tunde Femi Kunle Segun Yemi Tobi Dapo Kwame Kofi Kwabena Kwaku
Yaw Kojo Kwesi Ebenezer David Michael Joseph Godwin Chidi Ifeanyi Olusegun Oluwafemi Ayodele
Abiodun Akin Gbenga Tayo Osagie Osaro Efosa Uchenna Kelechi Chibuike Prince Godfrey Solomon
""")
WEST_AFRICAN_FEMALE = _words("""
Blessing Grace Patience Comfort Precious Joy Esther Funmilayo Folasade Adeola Adebola Abimbola
Bukola Ngozi Chioma Chiamaka Nneka Adaeze Amaka Ifeoma Abena Akosua Ama Efua Adwoa Yaa Afua
Akua Esi Temitope Titilayo Yetunde Bisola Kemi Toyin Funke Damilola Ebun Ronke Omolara Modupe
Eniola Ifeoluwa Oyinkansola Mercy Faith Gifty Victoria
""")

SOMALI_ARABIC_MALE = _words("""
Mohamed Ahmed Ali Abdi Abdirahman Abdullahi Abdikarim Abdiaziz Mohamud Hassan Hussein Ibrahim
Ismail Omar Osman Yusuf Farah Mustafa Khalid Said Saeed Jama Warsame Nur Aden Hamza Bashir
Karim Tarek Youssef Mahmoud Samir Nabil Walid Rami Fadi Ziad Amir Hamid Jamal Adel Anas Bilal
Idris Musa Ayman Hamdi
""")
SOMALI_ARABIC_FEMALE = _words("""
Fadumo Hodan Hawa Amina Asha Faduma Halima Khadra Sahra Ubah Ifrah Ayan Hibo Nasra Sagal Deqa
Fatuma Maryan Idil Nimo Fatima Layla Leila Mariam Noor Rania Salma Yasmin Zainab Huda Samira
Nadia Lina Dina Hanan Iman Rana Amal Sumaya
""")

EAST_EUROPEAN_MALE = _words("""
Piotr Paweł Tomasz Krzysztof Marcin Michał Łukasz Jakub Kamil Mateusz Adam Marek Grzegorz
Andrzej Jan Wojciech Dariusz Rafał Sebastian Bartosz Mariusz Robert Daniel Artur Arkadiusz
Ionuț Andrei Alexandru Mihai Florin Gabriel Marian Adrian Cristian Constantin Vasile Ion
Nicolae Stefan Bogdan Cătălin Tudor Dmitri Sergei Aleksandr Vladimir Mindaugas Tomas Darius
Andrius Giedrius Mantas Janis Andris Martins Jiří Petr Pavel Martin Milan Dušan Luboš Georgi
Ivan Dimitar Nikolai Viktor Oleksandr Yuri Arben Besnik Erion Gentian Ardit
""")
EAST_EUROPEAN_FEMALE = _words("""
Anna Katarzyna Agnieszka Magdalena Joanna Monika Małgorzata Ewa Barbara Aleksandra Natalia
Karolina Justyna Paulina Marta Dorota Beata Izabela Sylwia Alicja Maria Elena Ioana Andreea
Mihaela Cristina Gabriela Alina Georgiana Florentina Daniela Diana Raluca Simona Ramona Irina
Olga Svetlana Tatiana Jurgita Ieva Inga Laura Rūta Eglė Ilze Kristina Liga Petra Lucie Jana
Eva Zuzana Lenka Martina Ivana Desislava Oksana Yulia Valentina Ana Elona Arta
""")

EAST_ASIAN_MALE = _words("""
Wei Jun Ming Hao Jian Lei Yang Tao Bo Kai Long Qiang Feng Gang Hui Jie Lin Peng Xin Yong Zhi
Kevin Jason Tony Michael David Eric Vincent Minh Đức Tuấn Thanh Hùng Quang Nam Van Hai Phong
Cường Dũng Khánh
""")
EAST_ASIAN_FEMALE = _words("""
Li Mei Ying Xiao Yan Hui Jing Ling Na Ting Xiu Yu Fang Hong Juan Lan Min Qing Wen Yun Linh Mai
Thảo Hương Ngọc Trang Hoa Phương Thủy Anh Ha Nga Hanh Vy Jenny Amy Grace Helen
""")

# ------------------------------------------------------------------------------------------
# Surnames by origin
# ------------------------------------------------------------------------------------------
ANGLO_SURNAMES = _words("""
Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson
Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Jackson Wood Turner Martin
Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips
Watson Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey
Collins Bell Shaw Murphy Miller Cox Richards Marshall Anderson Simpson Ellis Adams Wilkinson
Foster Chapman Powell Webb Rogers Gray Mason Hunt Campbell Matthews Owen Palmer Holmes Mills
Barnes Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray Dixon Harvey Graham
Pearson Fletcher Walsh Gibson Howard Andrews Stewart Elliott Reynolds Saunders Payne Fox Ford
Pearce Day Brooks West Lawrence Cole Atkinson Bradley Spencer Gill Dawson Ball Burton O'Brien
Watts Rose Booth Perry Ryan Grant Wells Armstrong Francis Rees Hayes Hart Hudson Newman Barrett
Webster Hunter Gregory Carr Lowe Page Marsh Riley Dunn Woods Parsons Berry Stone Reid Holland
Hawkins Harding Porter Robertson Newton Oliver Reed Kennedy Williamson Bird Gardner Dean Lane
Cooke Bates Henderson Parry Burgess Bishop Walton Burns Nicholson Shepherd Ross Cross Long
Freeman Warren Nicholls Hamilton Byrne Sutton McDonald Yates Hodgson Robson Curtis Hopkins
O'Connor Harper Coleman Watkins Moss McCarthy Chambers O'Neill Griffin Sharp Hardy Wheeler
Potter Osborne Johnston Gordon Doyle Wallace George Jordan Hutchinson Rowe Burke May Pritchard
Gilbert Willis Higgins Read Miles Stevenson Stephenson Hammond Arnold Buckley Walters Hewitt
Barber Nelson Slater Austin Sullivan Whitehead Mann Frost Lambert Stephens Blake Lynch Goodwin
Barton Woodward Thomson Cunningham Quinn Barnett Baxter Clayton Nash Greenwood Jennings Holt
Kemp Poole Gallagher Bond Stokes Tucker Davidson Fowler Heath Norman Middleton Lees Banks
French Jarvis Abbott Ashton Atkins Bartlett Bentley Birch Black Blackburn Bolton Bowen Bowers
Bradshaw Brady Brennan Briggs Brookes Bryant Bull Burrows Bush Cameron Carey Carroll
Cartwright Chadwick Charlton Clements Cohen Connolly Conway Crawford Crossley Cullen Dale Daly
Daniels Davey Dennis Dickinson Dobson Dodd Doherty Donnelly Douglas Duffy Duncan Dyer Eaton
Emery Farrell Faulkner Fenton Field Finch Fitzgerald Fleming Flynn Forster Fraser Fry Fuller
Garner Gibbs Giles Glover Goddard Gough Gould Hale Hancock Hanson Hargreaves Harrington
Hartley Haynes Haywood Hicks Hobbs Hodges Hogan Holden Hooper Horton Houghton Howe Howell
Humphreys Hurst Hyde Ingram Jacobs Joyce Kay Kent Kerr Kirby Kirk Knowles Lamb Law Lawson
Leach Little Lord Lucas Lyons Macdonald Mackenzie Maguire Manning Maxwell McCann McGrath
McKenzie McLean Mellor Metcalfe Moran Morley Morton Naylor Nolan Norris North O'Donnell
O'Sullivan Owens Parkin Parkinson Patterson Peacock Pickering Pollard Pope Preston Randall
Rhodes Rice Ritchie Rowley Sanders Savage Sharpe Short Simmons Sims Skinner Steele Storey
Swift Sykes Talbot Thornton Tomlinson Townsend Tyler Vaughan Vincent Wade Wall Warner Waters
Watt Weston Whitaker Whittaker Wilkins Winter Wise Wyatt McLaughlin Connell Dunne O'Callaghan
Boyle Healy O'Shea Sweeney Kavanagh Power Casey Foley Fitzpatrick O'Leary McDonnell MacLeod
Sinclair Munro Ferguson McIntyre Gillespie Howells Llewellyn Pugh Prosser Probert Meredith
Gwynne Ainsworth Allan Allison Ambrose Appleton Archer Armitage Ashworth Aspinall Astley
Bainbridge Baldwin Bamford Bancroft Barlow Barry Bassett Batchelor Beattie Beck Bell Benson
Best Bevan Bibby Bickerton Bingham Blackwell Blair Blundell Boden Bowden Bowman Boyd
Bray Brewer Bridges Brook Broughton Buckingham Bullock Burnett Burt Butcher Byrne Cairns
Caldwell Callaghan Carpenter Carson Cassidy Cave Chamberlain Chandler Chaplin Cheshire
Christie Churchill Clough Coates Cochrane Cole Collier Coombes Corbett Cornwell Cotton Coulson
Cowley Craig Crane Croft Crook Crowther Cummings Dalton Darby Dawes Deakin Denton Dickson
Dillon Dolan Drake Driscoll Dudley Duke Durham Eastwood Edmonds Elliot Elson Evans Everett
Fairclough Farmer Farrow Fearon Fernandes Firth Fisher Fitzsimmons Forbes Forrest Foulkes
Fowles Frankland Gallacher Gamble Gardiner Garrett Gee Gibbons Gilmore Gledhill Goldsmith
Goodman Gordon Gorman Grady Greaves Gregson Griffith Haigh Halliday Hampson Harman Harris
Hassall Hawes Hayward Heaton Hedges Hendry Herbert Hibbert Hinchliffe Hirst Hoare Holloway
Holroyd Hope Hopkinson Horne Howarth Hoyle Hulme Humphries Hutchings Irving Jackson Jeffery
Jeffries Jewell Kaye Keane Keeling Kendall Kenny Kershaw Kirkham Lang Lancaster Latham Laws
Leigh Lennon Lewin Lindsay Livingstone Lockwood Lomas Lovell Lowther Lucas Lunn Mackay Madden
Mallon Malone Marr Marsden Massey Maynard McAllister McBride McCabe McCormack McCulloch
McGowan McGuire McKay McNally Meadows Millar Milne Mohan Moody Moon Morrison Mortimer Moss
Mulholland Murtagh Needham Nevin Newell Nixon Noble Nuttall Ogden Oakley Orr Parr Partridge
Peel Pemberton Penny Perkins Pike Platt Plummer Pratt Prescott Pugh Quigley Rawlinson
Rayner Redfern Regan Rigby Roach Robins Rooney Rourke Royle Rudd Rushton Salisbury Salt
Sargent Seddon Sellers Sexton Shannon Sheppard Sherwood Shields Simms Slack Smart Snowden
Stafford Stanley Stanton Starkey Stead Sterling Stott Strong Summers Swann Tait Tanner Tate
Thorpe Tierney Todd Toms Tranter Trotter Tuck Turnbull Tweedie Unwin Upton Varley Vickers
Walmsley Walsh Warburton Ward Wardle Wardell Waring Watkinson Weaver Welch Whelan Whiteley
Wiggins Wilde Wiley Wilkes Willetts Windsor Wolfe Woodcock Woolley Worrall Wren Wyllie Yeo
""")

CARIBBEAN_SURNAMES = _words("""
Campbell Williams Brown Smith Johnson Thomas Francis Grant Clarke Reid Morgan Edwards Lewis
Henry Richards Robinson Walker Gordon Bailey Stewart Thompson Graham Green Jackson Allen
Mitchell Hamilton Forbes Bennett McKenzie Samuels Gayle Ellis Palmer Spencer Blake Douglas
Benjamin Joseph Charles Anderson Wright Sinclair Daley Lindo Hylton Dacosta Bryan Fergus
""")

SOUTH_ASIAN_MUSLIM_SURNAMES = _words("""
Khan Hussain Ahmed Ali Akhtar Begum Iqbal Mahmood Shah Rehman Rahman Malik Butt Bibi Aslam
Hussein Islam Uddin Miah Choudhury Chowdhury Ahmad Sheikh Mirza Qureshi Raja Rashid Riaz Sadiq
Saleem Shafiq Siddiqui Tariq Yousaf Zaman Anwar Arshad Bashir Farooq Haq Hanif Javed Karim
Latif Majid Nawaz Rafiq Younis Abbasi Awan Bhatti Chaudhry Dar Hameed Hassan Kausar Khalid
Mughal Mohammed Nazir Parveen Rauf Sabir Shabbir Sultan Zafar Hoque Haque Rahim Ullah Mia Alam
Kabir Hossain Sarkar Talukder Khatun
""")

SOUTH_ASIAN_INDIC_SURNAMES = _words("""
Patel Singh Kaur Sharma Shah Kumar Gill Sandhu Sidhu Dhillon Mistry Parmar Chauhan Gupta Mehta
Joshi Desai Verma Rai Bains Johal Sahota Grewal Atwal Dhaliwal Sangha Virdi Kalsi Lal Ram
Thakkar Modi Pandya Solanki Chavda Lad Gohil Makwana Vaghela Rathod Jadeja Naik Nair Pillai
Menon Reddy Rao Iyer Chopra Kapoor Malhotra Bhatia Sethi Arora Khanna Anand Bansal Goyal Jain
Agarwal Saini Mann Sohal Bassi Chahal Hayer Purewal Thind
""")

WEST_AFRICAN_SURNAMES = _words("""
Adeyemi Okafor Okonkwo Adebayo Ogunleye Oladipo Olawale Adeleke Afolabi Akinola Balogun Bello
Eze Nwosu Obi Okeke Okoro Onyeka Uzor Chukwu Nwachukwu Mensah Owusu Boateng Asante Osei Addo
Agyeman Appiah Amoah Darko Danso Ofori Opoku Acheampong Adjei Annan Quaye Tetteh Yeboah Ansah
Badu Frimpong Gyamfi Kuffour Nkrumah Sarpong Oyelaran Adewale Ogunbanjo Olaniyan Oyewole Ajayi
Oni Oke Ige Adeniyi Fashola Coker Johnson Williams Taylor Okoye Ibekwe Nwankwo Ogbonna Uchenna
""")

SOMALI_ARABIC_SURNAMES = _words("""
Mohamed Ahmed Ali Hassan Hussein Abdi Omar Osman Ibrahim Yusuf Farah Warsame Jama Nur Aden
Abdullahi Ismail Mohamud Said Elmi Egal Duale Hersi Gedi Dirie Samatar Mahamud Haji Isse
Guled Al-Sayed Mansour Haddad Khalil Nasser Saleh Hamdan Aziz Rahim Abbas Salem Mustafa Othman
Kassem Darwish Habib Karam Sharif Al-Amin Suleiman Abdulla Awad
""")

EAST_EUROPEAN_SURNAMES = _words("""
Nowak Kowalski Kowalska Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański
Woźniak Dąbrowski Kozłowski Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski
Nowakowski Pawlowski Michalski Nowicki Adamczyk Dudek Zając Wieczorek Jablonski Król Majewski
Olszewski Jaworski Wróbel Malinowski Pawlak Witkowski Walczak Stępień Górski Rutkowski Popescu
Popa Pop Ionescu Dumitru Stan Stoica Gheorghe Matei Ciobanu Rusu Munteanu Constantin Mihai
Lazar Dobre Ene Florea Marin Tudor Kazlauskas Jankauskas Petrauskas Stankevičius Vasiliauskas
Žukauskas Butkus Paulauskas Bērziņš Kalniņš Ozols Liepiņš Novak Svoboda Dvořák Černý Horvath
Kovács Tóth Szabó Nagy Ivanov Petrov Georgiev Dimitrov Hoxha Krasniqi Gashi Berisha Shehu
Kovalenko Shevchenko Bondarenko
""")

EAST_ASIAN_SURNAMES = _words("""
Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Luo Gao Zheng Liang
Xie Tang Song Wong Chan Cheung Lee Lam Ng Ho Leung Chow Tsang Yip Lau Nguyễn Trần Lê Phạm
Hoàng Phan Vũ Đặng Bùi Đỗ Ngô Dương Lý
""")

FORENAMES: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    # (origin, sex) -> lists concatenated in rank order (flavour list first)
    ("anglo", "M"): (ANGLO_MALE,),
    ("anglo", "F"): (ANGLO_FEMALE,),
    ("caribbean", "M"): (CARIBBEAN_MALE, ANGLO_MALE),
    ("caribbean", "F"): (CARIBBEAN_FEMALE, ANGLO_FEMALE),
    ("south_asian_muslim", "M"): (SOUTH_ASIAN_MUSLIM_MALE,),
    ("south_asian_muslim", "F"): (SOUTH_ASIAN_MUSLIM_FEMALE,),
    ("south_asian_indic", "M"): (SOUTH_ASIAN_INDIC_MALE,),
    ("south_asian_indic", "F"): (SOUTH_ASIAN_INDIC_FEMALE,),
    ("west_african", "M"): (WEST_AFRICAN_MALE,),
    ("west_african", "F"): (WEST_AFRICAN_FEMALE,),
    ("somali_arabic", "M"): (SOMALI_ARABIC_MALE,),
    ("somali_arabic", "F"): (SOMALI_ARABIC_FEMALE,),
    ("east_european", "M"): (EAST_EUROPEAN_MALE,),
    ("east_european", "F"): (EAST_EUROPEAN_FEMALE,),
    ("east_asian", "M"): (EAST_ASIAN_MALE,),
    ("east_asian", "F"): (EAST_ASIAN_FEMALE,),
}

SURNAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "anglo": (ANGLO_SURNAMES,),
    "caribbean": (CARIBBEAN_SURNAMES, ANGLO_SURNAMES),
    "south_asian_muslim": (SOUTH_ASIAN_MUSLIM_SURNAMES,),
    "south_asian_indic": (SOUTH_ASIAN_INDIC_SURNAMES,),
    "west_african": (WEST_AFRICAN_SURNAMES,),
    "somali_arabic": (SOMALI_ARABIC_SURNAMES,),
    "east_european": (EAST_EUROPEAN_SURNAMES,),
    "east_asian": (EAST_ASIAN_SURNAMES,),
}

# Share of people of each origin who have at least one / two middle names.
MIDDLE_NAME_RATES: dict[str, tuple[float, float]] = {
    "anglo": (0.72, 0.10),
    "caribbean": (0.65, 0.10),
    "south_asian_muslim": (0.45, 0.05),
    "south_asian_indic": (0.35, 0.03),
    "west_african": (0.60, 0.15),
    "somali_arabic": (0.50, 0.10),
    "east_european": (0.20, 0.02),
    "east_asian": (0.25, 0.02),
}

# ------------------------------------------------------------------------------------------
# Nicknames / diminutives (formal -> informal)
# ------------------------------------------------------------------------------------------
NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy", "Liam"),
    "Robert": ("Bob", "Rob", "Bobby", "Robbie"),
    "Richard": ("Rick", "Rich", "Dick", "Ricky"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "John": ("Jack", "Johnny"),
    "Michael": ("Mike", "Mick", "Mickey"),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",),
    "Matthew": ("Matt",),
    "Anthony": ("Tony", "Ant"),
    "Daniel": ("Dan", "Danny"),
    "Joseph": ("Joe", "Joey"),
    "David": ("Dave", "Davy"),
    "Stephen": ("Steve",),
    "Steven": ("Steve",),
    "Andrew": ("Andy", "Drew"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Alexander": ("Alex", "Sandy"),
    "Benjamin": ("Ben",),
    "Samuel": ("Sam", "Sammy"),
    "Nicholas": ("Nick", "Nicky"),
    "Jonathan": ("Jon", "Johnny"),
    "Peter": ("Pete",),
    "Kenneth": ("Ken", "Kenny"),
    "Terence": ("Terry",),
    "Timothy": ("Tim",),
    "Gregory": ("Greg",),
    "Patrick": ("Pat", "Paddy"),
    "Raymond": ("Ray",),
    "Ronald": ("Ron", "Ronnie"),
    "Donald": ("Don",),
    "Gerald": ("Gerry",),
    "Leonard": ("Len", "Lenny"),
    "Frederick": ("Fred", "Freddie"),
    "Charles": ("Charlie", "Chas"),
    "Henry": ("Harry",),
    "Lawrence": ("Larry", "Laurie"),
    "Nathan": ("Nate",),
    "Nathaniel": ("Nat", "Nate"),
    "Zachary": ("Zach",),
    "Joshua": ("Josh",),
    "Jacob": ("Jake",),
    "Callum": ("Cal",),
    "Philip": ("Phil",),
    "Phillip": ("Phil",),
    "Douglas": ("Doug",),
    "Stuart": ("Stu",),
    "Francis": ("Frank",),
    "Albert": ("Bert", "Albie"),
    "Alfred": ("Alf", "Alfie"),
    "Archibald": ("Archie",),
    "Gareth": ("Gaz",),
    "Gary": ("Gaz",),
    "Lewis": ("Lew",),
    "Bradley": ("Brad",),
    "Jeffrey": ("Jeff",),
    "Geoffrey": ("Geoff",),
    "Dominic": ("Dom",),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Betty"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Catherine": ("Kate", "Cathy", "Kath"),
    "Katherine": ("Kate", "Katie", "Kathy"),
    "Kathryn": ("Kate", "Kath"),
    "Jennifer": ("Jen", "Jenny"),
    "Susan": ("Sue", "Susie"),
    "Deborah": ("Debbie", "Deb"),
    "Rebecca": ("Becky", "Becca"),
    "Victoria": ("Vicky", "Tori"),
    "Samantha": ("Sam", "Sammy"),
    "Alexandra": ("Alex", "Lexi"),
    "Christine": ("Chris", "Tina"),
    "Patricia": ("Pat", "Trish"),
    "Jacqueline": ("Jackie", "Jacqui"),
    "Josephine": ("Jo", "Josie"),
    "Joanne": ("Jo",),
    "Amanda": ("Mandy",),
    "Abigail": ("Abbie", "Abby"),
    "Charlotte": ("Charlie", "Lottie"),
    "Jessica": ("Jess",),
    "Eleanor": ("Ellie", "Nell"),
    "Natalie": ("Nat",),
    "Kimberley": ("Kim",),
    "Stephanie": ("Steph",),
    "Nicola": ("Nicky",),
    "Danielle": ("Dani",),
    "Caroline": ("Carrie",),
    "Dorothy": ("Dot",),
    "Pamela": ("Pam",),
    "Sandra": ("Sandy",),
    "Theresa": ("Tess",),
    "Gillian": ("Gill",),
    "Louise": ("Lou",),
    "Olivia": ("Liv",),
    "Isabella": ("Izzy", "Bella"),
    "Sarah": ("Sally",),
    "Ann": ("Annie",),
    "Anne": ("Annie",),
    "Valerie": ("Val",),
    "Mohammed": ("Mo",),
    "Muhammad": ("Mo",),
    "Abdullah": ("Abdul",),
    "Ibrahim": ("Ibby",),
    "Oluwaseun": ("Seun",),
    "Babatunde": ("Tunde",),
    "Oluwafemi": ("Femi",),
    "Olusegun": ("Segun",),
    "Chukwuemeka": ("Emeka",),
    "Ikechukwu": ("Ike",),
    "Aleksandr": ("Sasha",),
    "Katarzyna": ("Kasia",),
    "Małgorzata": ("Gosia",),
    "Alexandru": ("Alex",),
}

# Spellings that sound alike: any member may be recorded for any other.
PHONETIC_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Catherine", "Katherine", "Kathryn", "Katharine", "Cathryn"),
    ("Mohammed", "Muhammad", "Mohammad", "Mohamed", "Muhammed", "Mohamad"),
    ("Stephen", "Steven"),
    ("Sean", "Shaun", "Shawn"),
    ("Philip", "Phillip"),
    ("Geoffrey", "Jeffrey"),
    ("Ann", "Anne"),
    ("Sara", "Sarah"),
    ("Rebecca", "Rebekah"),
    ("Claire", "Clare"),
    ("Jayden", "Jaden", "Jaiden"),
    ("Aaliyah", "Aliyah"),
    ("Aisha", "Ayesha", "Aysha"),
    ("Yusuf", "Yousef", "Yusef", "Youssef"),
    ("Ahmed", "Ahmad"),
    ("Hussain", "Hussein", "Husain"),
    ("Osman", "Usman", "Uthman"),
    ("Leigh", "Lee"),
    ("Alan", "Allan", "Allen"),
    ("Nicola", "Nichola"),
    ("Zoe", "Zoey"),
    ("Isobel", "Isabel", "Isabelle"),
    ("Tracy", "Tracey"),
    ("Lindsay", "Lindsey", "Lyndsey"),
    ("Brian", "Bryan"),
    ("Neil", "Neal"),
    ("Rachel", "Rachael"),
    ("Jemma", "Gemma"),
    ("Hayley", "Haley", "Hailey"),
    ("Kayleigh", "Kayley", "Kaylee"),
    ("Carl", "Karl"),
    ("Marc", "Mark"),
    ("Jon", "John"),
    ("Elliot", "Elliott"),
    ("Vicky", "Vicki"),
    ("Abdirahman", "Abdurahman"),
    ("Abdullahi", "Abdulahi"),
    ("Mohamud", "Mahmoud", "Mahmood"),
    ("Fadumo", "Faduma"),
    ("Hodan", "Hodon"),
    ("Said", "Saeed", "Sayed"),
    ("Osagie", "Osaghie"),
    ("Oluwaseun", "Oluseun"),
    ("Chukwuemeka", "Chukwuemaka"),
    ("Piotr", "Peter"),
    ("Paweł", "Pavel", "Paul"),
    ("Tomasz", "Thomas"),
    ("Jakub", "Jacob"),
    ("Michał", "Michael"),
    ("Łukasz", "Lucas"),
    ("Aleksandr", "Alexander", "Oleksandr"),
    ("Dmitri", "Dmitry", "Dimitri"),
    ("Sergei", "Sergey"),
    ("Yuri", "Yury", "Iurii"),
    ("Yulia", "Julia", "Iuliia"),
    ("Tatiana", "Tatyana"),
    ("Natalija", "Natalia"),
    ("Wei", "Way"),
    ("Jun", "Joon"),
    ("Ming", "Min"),
    ("Xiao", "Shao"),
    ("Zhang", "Chang"),
    ("Nguyễn", "Nguyin", "Ngyuen"),
    ("Smith", "Smyth"),
    ("Thompson", "Thomson"),
    ("Davies", "Davis"),
    ("Phillips", "Philips"),
    ("Reid", "Read", "Reed"),
    ("Gray", "Grey"),
    ("Clark", "Clarke"),
    ("Matthews", "Mathews"),
    ("McDonald", "MacDonald", "Macdonald"),
    ("Stevens", "Stephens"),
    ("Stevenson", "Stephenson"),
    ("Brown", "Browne"),
    ("Chowdhury", "Choudhury", "Chaudhry", "Chaudhary", "Choudhary"),
    ("Begum", "Begom"),
    ("Rahman", "Rehman"),
    ("Hoque", "Haque", "Haq"),
    ("Miah", "Mia"),
    ("Uddin", "Udin"),
    ("Mahmood", "Mehmood", "Mahmud"),
    ("Qureshi", "Kureshi"),
    ("Siddiqui", "Siddiqi"),
    ("Yousaf", "Yusuf", "Yousuf"),
    ("Nowak", "Novak"),
    ("Kowalski", "Kovalski"),
    ("Wójcik", "Woycik", "Voytchik"),
    ("Wiśniewski", "Vishnevski"),
    ("Shevchenko", "Shevchenco"),
    ("Popescu", "Popesku"),
    ("Ivanov", "Ivanoff"),
    ("Mohamed", "Mohammed", "Mohammad"),
    ("Abdi", "Abdy"),
    ("Warsame", "Warsama"),
    ("Farah", "Fara"),
    ("Okafor", "Okafo"),
    ("Mensah", "Mensa"),
    ("Owusu", "Owusuh"),
    ("Adeyemi", "Adeyimi"),
    ("Boateng", "Boatteng"),
    ("Cheung", "Chung"),
    ("Chan", "Chen"),
    ("Wong", "Wang"),
    ("Lau", "Liu"),
    ("Ng", "Ing"),
    ("Trần", "Tranh"),
    ("Phạm", "Pam"),
)

# ------------------------------------------------------------------------------------------
# Addresses and companies
# ------------------------------------------------------------------------------------------
STREET_WORDS = _words("""
Church Station Park Victoria Albert Queens Kings Mill School London Manor Grange Green North
South West East Springfield Highfield Windsor York Chester Richmond Elm Oak Ash Beech Cedar
Willow Meadow Orchard Brook Bridge Market New Alexandra Grove Hill Cross Moor Forest Chapel
Castle Abbey Priory Wellington Nelson Stanley Clarence Beaconsfield Kingsway Holly Hawthorn
Rowan Birch Maple Chestnut Lime Poplar Sycamore Laburnum Lilac Heather Primrose Rose Fern Clover
Oxford Cambridge Derby Lancaster Warwick Stafford Sutton Cheltenham Belmont Fairfield Broad
Bold Mount Pleasant Moorland Valley Riverside Canal Dock Harbour Quarry Farm Fieldside Hall
Rectory Vicarage Lodge Tower Jubilee Coronation Carlton Trinity Wood Ridge Cliff Bank Gordon
""")
STREET_TYPES = (
    "Street",
    "Road",
    "Lane",
    "Avenue",
    "Close",
    "Drive",
    "Way",
    "Crescent",
    "Gardens",
    "Place",
    "Court",
    "Terrace",
    "Grove",
    "Walk",
    "View",
    "Rise",
)
STREET_ABBREVIATIONS = {
    "Street": "St",
    "Road": "Rd",
    "Lane": "Ln",
    "Avenue": "Ave",
    "Close": "Cl",
    "Drive": "Dr",
    "Crescent": "Cres",
    "Gardens": "Gdns",
    "Place": "Pl",
    "Court": "Ct",
    "Terrace": "Terr",
    "Grove": "Gr",
}

COMPANY_PREFIXES = _words("""
Northern Southern Eastern Western Central Albion Crown Phoenix Sterling Apex Summit Pinnacle
Horizon Meridian Beacon Anchor Harbour Premier Regal Royal Capital Metro Urban City County
Pennine Mercia Wessex Thames Severn Mersey Tyne Trent Humber Solent Cotswold Chiltern Peak
Lakeland Moorland Highland Lowland Oakwood Elmwood Ashford Riverside Parkside Kingsway
Greenfield Brookfield Castle Bridge Tower Gateway Portland Oxford Cambridge Lincoln Windsor
Cavendish Grosvenor Belgrave Mayfair Chelsea Kensington Sovereign Legacy Heritage Compass
Arrow Swift Falcon Eagle Lion Unicorn Griffin Pegasus Orion Atlas Vertex Nova Zenith Quantum
Evergreen Silverline Goldcrest Bluebell Redwood Blackstone Whitehall Greystone Ironbridge
""")
COMPANY_TRADES = (
    "Finance",
    "Credit",
    "Lending",
    "Homes",
    "Housing Association",
    "Property Management",
    "Lettings",
    "Capital",
    "Bank",
    "Building Society",
    "Recoveries",
    "Collections",
    "Motor Finance",
    "Insurance",
    "Estates",
    "Developments",
    "Utilities",
    "Energy",
    "Water",
    "Telecom",
    "Retail",
    "Builders",
    "Construction",
    "Services",
    "Holdings",
    "Investments",
    "Mortgages",
    "Loans",
    "Debt Solutions",
    "Asset Management",
    "Leasing",
    "Car Sales",
    "Solicitors",
    "Landlords",
    "Housing Trust",
    "Living",
    "Care",
    "Logistics",
    "Trading",
    "Supplies",
)
COMPANY_SUFFIXES = ("Limited", "Ltd", "PLC", "LLP", "Ltd", "Limited", "(UK) Limited", "Group Ltd")

# Home Office offence classes per offence group (codes are "class/subclass").
OFFENCE_CLASSES: dict[str, tuple[int, ...]] = {
    "VIOLENCE": (1, 2, 4, 5, 8, 37, 104, 105),
    "SEXUAL": (17, 19, 20, 21, 22, 70, 88),
    "ROBBERY": (34,),
    "THEFT": (39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49),
    "CRIMINAL_DAMAGE": (56, 58, 59, 149),
    "DRUGS": (92,),
    "WEAPONS": (10, 81),
    "PUBLIC_ORDER": (66, 125, 195),
    "FRAUD": (51, 52, 53, 814),
    "MOTORING": (803, 804, 805, 806, 809),
    "SUMMARY_OTHER": (139, 140, 141, 196),
    "MISC": (99, 802),
}

# Prison establishment codes (NOMIS-style agency ids); the first ones hold women.
FEMALE_ESTABLISHMENTS = ("AGI", "BZI", "DWI", "DHI", "EWI", "FHI", "LNI", "NHI", "PFI", "SDI", "STI")
MALE_ESTABLISHMENTS = _words("""
AYI BAI BCI BFI BLI BMI BNI BRI BSI BWI BXI CDI CFI CKI CLI CWI DAI DGI DMI DNI DTI EEI EHI ESI
EXI EYI FBI FDI FKI FMI FNI FSI FWI GHI GMI GNI GTI HBI HCI HDI HEI HHI HII HLI HMI HOI HPI HVI
ISI IWI KMI KVI LCI LEI LFI LGI LHI LII LLI LPI LTI LWI LYI MDI MHI MRI MSI MTI NMI NSI NWI
ONI OWI PBI PDI PNI PRI PVI RCI RHI RNI RSI SFI SHI SKI SLI SNI SPI SUI SWI TCI TSI UKI UPI VEI
WCI WDI WEI WHI WII WLI WMI WNI WRI WSI WTI WWI WYI
""")

PROBATION_PROVIDERS = (
    "N01",
    "N02",
    "N03",
    "N04",
    "N05",
    "N06",
    "N07",
    "N50",
    "N51",
    "N52",
    "N53",
    "N54",
    "N55",
    "N56",
    "N57",
    "N58",
    "N59",
)
